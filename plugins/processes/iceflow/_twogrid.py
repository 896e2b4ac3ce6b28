"""The two-grid correction of the `solved` method.

The column preconditioner (:mod:`._precondition`) leaves L-BFGS the
horizontal coupling, whose conditioning grows as (L / dx)^2: halving the
grid spacing doubles the iterations a warm-started solve needs. The smooth,
long-wavelength part of the error is what the fine iterations reduce
slowest, and a grid twice as coarse sees it at a quarter of the cost.

A correction is one step of the full approximation scheme (Brandt 1977;
Briggs, Henson and McCormick 2000, ch. 6) on the energy. The fields are
injected on every other node (the thickness padded with ice-free nodes,
the others by repeating the edge, to an odd number of nodes), the
velocity X too (x_c); the coarse problem minimises

    J_c(y) - <tau, y>,    tau = grad J_c(x_c) - P^T grad J(X),

with P the bilinear prolongation, so that its gradient at x_c is the
fine gradient seen through P: on an already converged X nothing moves.
Its solution y_c (compiled L-BFGS on its own column scales) gives the
correction P (y_c - x_c), accepted when it lowers the fine energy, else
half of it, else nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from igm_plugins.processes.iceflow._lbfgs import make_lbfgs_cycle
from igm_plugins.processes.iceflow._precondition import from_scaled, scaled_gradient, to_scaled

REDUCTION = 0.3  # the coarse solve stops when its residual is this fraction of its first
SMALLEST = 64
"""Nodes on the shorter side of the smallest window the correction runs on.
Under it the fine iterations are few and cheap and the correction's fixed
cost (about three fine energy evaluations) outweighs them: on the shipped
glacier's 48 x 64 window at 100 m a warm step took 0.22 s with it and
0.14 s without; on its 96 x 128 window at 50 m 0.61 s with it and 0.87 s
without (bench/RESULTS.md, 2026-12-05)."""


def coarsens(shape: tuple[int, ...]) -> bool:
    """Whether a window of node shape (..., ny, nx) is large enough to coarsen."""
    return min(shape[-2:]) >= SMALLEST


def _pad_to_odd(f: tf.Tensor, mode: str) -> tf.Tensor:
    """f (..., ny, nx) with one more row and column where ny or nx is even:
    zeros (``mode`` "CONSTANT") or a copy of the last (``"SYMMETRIC"``)."""
    shape = tf.shape(f)
    pad = tf.stack([tf.zeros_like(shape), 1 - shape % 2], axis=1)
    pad = tf.concat([tf.zeros_like(pad[:-2]), pad[-2:]], axis=0)
    return tf.pad(f, pad, mode=mode)


def inject(f: tf.Tensor, mode: str = "SYMMETRIC") -> tf.Tensor:
    """The values of f (..., ny, nx) on every other node of its odd-padded
    grid: (..., (ny + 1) // 2 + ..., ...), the corners kept."""
    return _pad_to_odd(f, mode)[..., ::2, ::2]


def prolong(coarse: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """Bilinear interpolation of node values (..., nyc, nxc) onto the grid
    twice as fine, cropped to its first ``shape`` = (ny, nx) nodes."""

    def along_last(a):
        mid = 0.5 * (a[..., :-1] + a[..., 1:])
        woven = tf.reshape(tf.stack([a[..., :-1], mid], axis=-1),
                           tf.concat([tf.shape(a)[:-1], [-1]], axis=0))
        return tf.concat([woven, a[..., -1:]], axis=-1)

    fine = tf.linalg.matrix_transpose(along_last(tf.linalg.matrix_transpose(along_last(coarse))))
    return fine[..., :shape[0], :shape[1]]


def make_coarse_correction(value_and_grad: Callable, scales: Callable) -> Callable:
    """The two-grid correction (see the module's docstring), to be compiled by
    the caller, of the energy ``value_and_grad(X, thk, usurf, A, C, dx) ->
    (J, dJ/dX)`` whose column scales are ``scales(X, *same args)``.

    ``correct(X, J, g, nbit, gtol, tail, rtol, thk, usurf, A, C, dx)``
    takes the fine velocity X (2, Nz, ny, nx, m/yr) with its energy J and
    gradient g, runs at most ``nbit`` coarse L-BFGS iterations, stopping at
    a coarse scaled residual ``gtol`` (or when the energy stalls, ``tail``
    and ``rtol`` as in :func:`._lbfgs.make_lbfgs_cycle`), and returns the
    corrected X with its J and g, and the coarse iterations run."""

    def coarse_fg(Y, scale, tau, *args):
        X = from_scaled(Y, scale)
        J, g = value_and_grad(X, *args)
        g = g - tau
        return J - tf.reduce_sum(tau * X), scaled_gradient(g, scale), g

    cycle = make_lbfgs_cycle(coarse_fg)

    def correct(X, J, g, nbit, gtol, tail, rtol, thk, usurf, A, C, dx):
        args = (thk, usurf, A, C, dx)
        fine_shape = tf.shape(thk)
        cargs = (inject(thk, "CONSTANT"), inject(usurf), inject(A), inject(C), 2.0 * dx)
        scale = scales(inject(X, "CONSTANT"), *cargs)
        Xc = from_scaled(to_scaled(inject(X, "CONSTANT"), scale), scale)  # frozen bases at 0
        with tf.GradientTape() as tape:
            probe = tf.zeros_like(Xc)
            tape.watch(probe)
            seen = tf.reduce_sum(prolong(probe, fine_shape) * g)
        pulled = tape.gradient(seen, probe)  # P^T g
        Jc, gc = value_and_grad(Xc, *cargs)
        tau = gc - pulled
        _, driving = value_and_grad(tf.zeros_like(Xc), *cargs)
        gstop = tf.maximum(gtol * tf.norm(scaled_gradient(driving, scale)),
                           REDUCTION * tf.norm(scaled_gradient(pulled, scale)))
        Yc, its, *_ = cycle(to_scaled(Xc, scale), Jc - tf.reduce_sum(tau * Xc),
                            scaled_gradient(pulled, scale), pulled, nbit, tf.constant(1.0),
                            tf.constant(0.0), tail, rtol, gstop, scale, tau, *cargs)
        e = prolong(from_scaled(Yc, scale) - Xc, fine_shape)

        def apply(fraction):
            J1, g1 = value_and_grad(X + fraction * e, *args)
            return J1, g1, X + fraction * e

        def halve():
            J1, g1, X1 = apply(0.5)
            return tf.cond(J1 < J, lambda: (J1, g1, X1), lambda: (J, g, X))

        def full():
            J1, g1, X1 = apply(1.0)
            return tf.cond(J1 < J, lambda: (J1, g1, X1), halve)

        J, g, X = tf.cond(its > 0, full, lambda: (J, g, X))
        return X, J, g, its

    return correct

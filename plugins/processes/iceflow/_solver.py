"""The `solved` method: minimise the Blatter-Pattyn energy with autodiff.

Two optimisers, both warm-started from the previous field: L-BFGS
(two-loop recursion, backtracking Armijo line search) on the column-scaled
variables of :mod:`._precondition`, whose scales are rebuilt at the current
velocity every ``refresh`` iterations, and Adam (fixed step in m/yr, on the
velocities). A solve stops when it has converged, when ``nbitmax``
iterations are spent, or when the energy stops decreasing (the drop over
the last ``patience`` iterations below ``rtol`` times its magnitude: the
float32 floor).

Converged means a scaled residual at most ``gtol``: the norm of the
energy's gradient in the column metric (an estimate of the energy-norm
distance to the minimum) relative to its norm at zero velocity, where the
viscous and friction terms vanish and the gradient is the driving stress.
A warm start that already satisfies it takes no iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import tensorflow as tf

from igm_plugins.processes.iceflow._physics import FlowConstants, energy
from igm_plugins.processes.iceflow._precondition import (
    column_scales,
    from_scaled,
    scaled_gradient,
    to_scaled,
)

LINE_SEARCH_HALVINGS = 40  # down to 1e-12 of the first guess: the line search has failed


@dataclass
class SolveReport:
    """What a solve did: iterations, the energy (MPa m/yr per node) before
    and after, the scaled residual (dimensionless, see the module's
    docstring) and whether it is at most the tolerance."""

    iterations: int
    energy_start: float
    energy_end: float
    residual: float = 0.0
    converged: bool = True


class Objective(NamedTuple):
    """The compiled functions a solve calls, on the window's fields
    ``args = (thk, usurf, A, C, dx)``: ``fg(X, *args) -> (J, dJ/dX)`` of
    the velocity stack X (2, Nz, ny, nx, m/yr); ``fgs(Y, scale, *args)``
    the same of the column-scaled variables Y; ``scales(X, *args)`` the
    column scales at X (see :mod:`._precondition`)."""

    fg: Callable
    fgs: Callable
    scales: Callable


def make_objective(consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor, periodic: bool,
                   jit: bool) -> Objective:
    """The :class:`Objective` of the Blatter-Pattyn energy (XLA with ``jit``)."""

    def value_and_grad(X, thk, usurf, A, C, dx):
        with tf.GradientTape() as tape:
            tape.watch(X)
            J = energy(X[0], X[1], thk, usurf, A, C, dx, zeta, slope, consts, periodic)
        return J, tape.gradient(J, X)

    def scaled(Y, scale, thk, usurf, A, C, dx):
        J, g = value_and_grad(from_scaled(Y, scale), thk, usurf, A, C, dx)
        return J, scaled_gradient(g, scale)

    def scales(X, thk, usurf, A, C, dx):
        return column_scales(X, thk, usurf, A, C, dx, zeta, slope, consts, periodic)

    def compiled(f):
        return tf.function(f, jit_compile=jit, reduce_retracing=True, autograph=False)

    return Objective(compiled(value_and_grad), compiled(scaled), compiled(scales))


def _stalled(history: list[float], patience: int, rtol: float) -> bool:
    if len(history) <= patience:
        return False
    drop = history[-patience - 1] - history[-1]
    return drop <= rtol * max(abs(history[-1]), 1e-12)


def minimise(objective: Objective, X0: tf.Tensor, args: tuple, optimizer: str,
             step_size: float, nbitmax: int, rtol: float = 1e-6, patience: int = 10,
             memory: int = 10, gtol: float = 1e-2,
             refresh: int = 20, X_metric: tf.Tensor | None = None,
             precondition: bool = True) -> tuple[tf.Tensor, SolveReport]:
    """Minimise ``fg(X, *args)`` from ``X0``; returns the minimiser and a
    report. ``step_size``: Adam's learning rate (m/yr);
    ``gtol``: the largest scaled residual of a converged solve;
    ``refresh``: L-BFGS iterations between two rebuilds of the scales;
    ``X_metric``: the velocity the first scales are built at (X0 when
    None; from rest, an estimate such as the shallow-ice field);
    ``precondition``: false runs L-BFGS on the velocities themselves (the
    scales still measure the residual)."""
    fg, scales = objective.fg, objective.scales
    _, driving = fg(tf.zeros_like(X0), *args)
    X = X0
    J, g = fg(X, *args)
    history = [float(J)]
    it, gamma = 0, 1.0  # the first L-BFGS step of a cycle: gamma times the gradient
    finished = False  # a failed line search, or the one run of Adam or plain L-BFGS
    while True:
        scale = scales(X if X_metric is None else X_metric, *args)
        X_metric = None  # the later scales follow the velocity
        residual = _norm(scaled_gradient(g, scale)) / max(
            _norm(scaled_gradient(driving, scale)), 1e-30)
        if (finished or residual <= gtol or it >= nbitmax
                or _stalled(history, patience, rtol)):
            break
        if optimizer == "lbfgs" and not precondition:
            X, done, _ = _lbfgs(fg, X, args, nbitmax - it, memory, rtol, patience, history,
                                first_step=step_size)
        elif optimizer == "adam":
            X, done = _adam(fg, X, args, step_size, nbitmax - it, rtol, patience, history)
        else:
            Y, done, gamma = _lbfgs(objective.fgs, to_scaled(X, scale), (scale, *args),
                                    min(refresh, nbitmax - it), memory, rtol, patience,
                                    history, gamma=gamma)
            X = from_scaled(Y, scale)
        it += done
        _, g = fg(X, *args)
        finished = done == 0 or optimizer == "adam" or not precondition
    return X, SolveReport(it, history[0], history[-1], residual, residual <= gtol)


def _norm(g: tf.Tensor) -> float:
    return float(tf.sqrt(tf.reduce_sum(g * g)))


def _adam(fg, X0, args, lr, nbitmax, rtol, patience, history):
    """Adam from X0 for at most nbitmax iterations, appending the energies
    to ``history`` and stopping when it stalls: (X, iterations)."""
    X = tf.identity(X0)
    m1 = tf.zeros_like(X)
    m2 = tf.zeros_like(X)
    b1, b2, eps = 0.9, 0.999, 1e-7
    it = 0
    for it in range(1, nbitmax + 1):
        J, g = fg(X, *args)
        if it > 1:
            history.append(float(J))
            if _stalled(history, patience, rtol):
                break
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        X = X - lr * (m1 / (1 - b1**it)) / (tf.sqrt(m2 / (1 - b2**it)) + eps)
    history.append(float(fg(X, *args)[0]))
    return X, it


def _dot(a: tf.Tensor, b: tf.Tensor) -> float:
    return float(tf.reduce_sum(a * b))


def _lbfgs(fg, Y0, args, nbitmax, memory, rtol, patience, history, first_step=None,
           gamma=1.0):
    """L-BFGS from Y0 for at most nbitmax iterations, appending the
    energies to ``history``; stops when it stalls or the line search fails.
    Its first step is the steepest descent: ``gamma`` times the gradient
    (in the scaled variables, where the previous cycle's last curvature
    ratio s.y/y.y is a good guess), or with ``first_step`` a largest change
    of that size. Returns (Y, iterations, the last curvature ratio)."""

    def steepest(g):  # the factor of the gradient in a first step
        if first_step is None:
            return gamma
        return first_step / max(float(tf.reduce_max(tf.abs(g))), 1e-30)

    Y = tf.identity(Y0)
    J, g = fg(Y, *args)
    f = float(J)
    pairs: list[tuple[tf.Tensor, tf.Tensor, float]] = []
    it = 0
    while it < nbitmax:
        q = g
        alphas = []
        for s, y, rho in reversed(pairs):
            a = rho * _dot(s, q)
            alphas.append(a)
            q = q - a * y
        if pairs:
            s, y, _ = pairs[-1]
            q = q * (_dot(s, y) / _dot(y, y))
        else:
            q = q * steepest(g)
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            b = rho * _dot(y, q)
            q = q + (a - b) * s
        d = -q
        slope = _dot(g, d)
        if slope >= 0:
            pairs.clear()
            d = -g * steepest(g)
            slope = _dot(g, d)
        t = 1.0
        for _ in range(LINE_SEARCH_HALVINGS):
            Jn, gn = fg(Y + t * d, *args)
            fn = float(Jn)
            if fn <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break
        it += 1
        s = t * d
        y = gn - g
        sy = _dot(s, y)
        if sy > 1e-12 * _dot(y, y):
            pairs.append((s, y, 1.0 / sy))
            if len(pairs) > memory:
                pairs.pop(0)
        Y, g, f = Y + s, gn, fn
        history.append(f)
        gamma = sy / _dot(y, y) if sy > 0 else gamma
        if _stalled(history, patience, rtol):
            break
    return Y, it, gamma

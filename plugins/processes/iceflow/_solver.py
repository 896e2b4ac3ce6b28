"""The `solved` method: minimise the Blatter-Pattyn energy with autodiff.

Two optimisers, both warm-started from the previous field: Adam (fixed
step in m/yr) and L-BFGS (two-loop recursion, backtracking Armijo line
search). Both stop when the energy stops decreasing: the drop over the last
``patience`` iterations falls below ``rtol`` times its magnitude.

Whether a solve converged is judged by its scaled residual, not by the
stall: the norm of the energy gradient at the end relative to its norm at
zero velocity, where the viscous and friction terms vanish and the gradient
is the driving stress (rho g H grad s, weighted as in the energy). A solve
converged when the residual is at most ``gtol``; a stalled line search on a
stiff bed leaves it near or above 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from igm_plugins.processes.iceflow._physics import FlowConstants, energy


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


def make_energy_and_grad(consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor,
                         periodic: bool, jit: bool) -> Callable:
    """A tf.function ``(X, thk, usurf, A, C, dx) -> (J, dJ/dX)``, X = stack
    of U and V, (2, Nz, ny, nx)."""

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def fg(X, thk, usurf, A, C, dx):
        with tf.GradientTape() as tape:
            tape.watch(X)
            J = energy(X[0], X[1], thk, usurf, A, C, dx, zeta, slope, consts, periodic)
        return J, tape.gradient(J, X)

    return fg


def _stalled(history: list[float], patience: int, rtol: float) -> bool:
    if len(history) <= patience:
        return False
    drop = history[-patience - 1] - history[-1]
    return drop <= rtol * max(abs(history[-1]), 1e-12)


def minimise(fg: Callable, X0: tf.Tensor, args: tuple, optimizer: str, step_size: float,
             nbitmax: int, rtol: float = 1e-6, patience: int = 10,
             memory: int = 10, gtol: float = 1e-2) -> tuple[tf.Tensor, SolveReport]:
    """Minimise ``fg(X, *args)`` from ``X0``; returns the minimiser and a
    report. ``step_size``: Adam's learning rate, or the largest velocity
    change (m/yr) of L-BFGS's first step; ``gtol``: the largest scaled
    residual of a converged solve."""
    if optimizer == "adam":
        X, report = _adam(fg, X0, args, step_size, nbitmax, rtol, patience)
    else:
        X, report = _lbfgs(fg, X0, args, step_size, nbitmax, rtol, patience, memory)
    _, g = fg(X, *args)
    _, driving = fg(tf.zeros_like(X), *args)
    report.residual = _norm(g) / max(_norm(driving), 1e-30)
    report.converged = report.residual <= gtol
    return X, report


def _norm(g: tf.Tensor) -> float:
    return float(tf.sqrt(tf.reduce_sum(g * g)))


def _adam(fg, X0, args, lr, nbitmax, rtol, patience):
    X = tf.identity(X0)
    m1 = tf.zeros_like(X)
    m2 = tf.zeros_like(X)
    b1, b2, eps = 0.9, 0.999, 1e-7
    history: list[float] = []
    it = 0
    for it in range(1, nbitmax + 1):
        J, g = fg(X, *args)
        history.append(float(J))
        if _stalled(history, patience, rtol):
            break
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        X = X - lr * (m1 / (1 - b1**it)) / (tf.sqrt(m2 / (1 - b2**it)) + eps)
    J, _ = fg(X, *args)
    history.append(float(J))
    return X, SolveReport(it, history[0], history[-1])


def _dot(a: tf.Tensor, b: tf.Tensor) -> float:
    return float(tf.reduce_sum(a * b))


def _lbfgs(fg, X0, args, step_size, nbitmax, rtol, patience, memory):
    X = tf.identity(X0)
    J, g = fg(X, *args)
    f = float(J)
    history = [f]
    pairs: list[tuple[tf.Tensor, tf.Tensor, float]] = []
    it = 0
    while it < nbitmax:
        it += 1
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
            q = q * (step_size / max(float(tf.reduce_max(tf.abs(g))), 1e-30))
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            b = rho * _dot(y, q)
            q = q + (a - b) * s
        d = -q
        slope = _dot(g, d)
        if slope >= 0:
            pairs.clear()
            d = -g * (step_size / max(float(tf.reduce_max(tf.abs(g))), 1e-30))
            slope = _dot(g, d)
        t = 1.0
        for _ in range(30):
            Jn, gn = fg(X + t * d, *args)
            fn = float(Jn)
            if fn <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break
        s = t * d
        y = gn - g
        sy = _dot(s, y)
        if sy > 1e-12 * _dot(y, y):
            pairs.append((s, y, 1.0 / sy))
            if len(pairs) > memory:
                pairs.pop(0)
        X, g, f = X + s, gn, fn
        history.append(f)
        if _stalled(history, patience, rtol):
            break
    return X, SolveReport(it, history[0], history[-1])

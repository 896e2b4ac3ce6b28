"""The `solved` method: minimise the Blatter-Pattyn energy with autodiff.

Two optimisers, both warm-started from the previous field: L-BFGS
(two-loop recursion, backtracking Armijo line search) on the column-scaled
variables of :mod:`._precondition`, whose scales are rebuilt at the current
velocity after ``refresh`` iterations, then after twice as many, and so on
(the first rebuilds follow a velocity still far from the answer, from rest;
later ones would mostly throw away the curvature pairs L-BFGS has gathered,
which a warm start needs more), each rebuild and the run up to the next one
a single compiled call (:func:`make_lbfgs_cycle`), and Adam (fixed step in
m/yr, on the velocities). A solve stops when it has converged, when
``nbitmax`` iterations are spent, or when the energy stops decreasing (the
drop over the last ``patience`` iterations below ``rtol`` times its
magnitude: the float32 floor).

Converged means a scaled residual at most ``gtol``: the norm of the
energy's gradient in the column metric (an estimate of the energy-norm
distance to the minimum) relative to its norm at zero velocity, where the
viscous and friction terms vanish and the gradient is the driving stress.
The L-BFGS run checks it at every iteration, in the metric of the scales it
runs on, and stops as soon as it holds; a warm start that already
satisfies it takes no iteration.
"""

from __future__ import annotations

import math
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
MEMORY = 10  # L-BFGS curvature pairs kept


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
    the velocity stack X (2, Nz, ny, nx, m/yr); ``scales(X, *args)`` the
    column scales at X (see :mod:`._precondition`); ``lbfgs`` a compiled
    L-BFGS run on the velocities and ``lbfgs_scaled`` one on the
    column-scaled variables (see :func:`make_lbfgs_cycle`)."""

    fg: Callable
    scales: Callable
    lbfgs: Callable
    lbfgs_scaled: Callable


def make_objective(consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor, periodic: bool,
                   jit: bool) -> Objective:
    """The :class:`Objective` of the Blatter-Pattyn energy (XLA with ``jit``)."""

    def value_and_grad(X, thk, usurf, A, C, dx):
        with tf.GradientTape() as tape:
            tape.watch(X)
            J = energy(X[0], X[1], thk, usurf, A, C, dx, zeta, slope, consts, periodic)
        return J, tape.gradient(J, X)

    def scales(X, thk, usurf, A, C, dx):
        return column_scales(X, thk, usurf, A, C, dx, zeta, slope, consts, periodic)

    def plain(Y, *args):
        J, g = value_and_grad(Y, *args)
        return J, g, g

    def scaled(Y, scale, *args):
        """(J, the gradient in the scaled variables, the gradient in velocity)."""
        J, g = value_and_grad(from_scaled(Y, scale), *args)
        return J, scaled_gradient(g, scale), g

    run_plain, run_scaled = make_lbfgs_cycle(plain), make_lbfgs_cycle(scaled)

    def lbfgs(X, J, g, nbit, gamma, tail, rtol, first_step, *args):
        X, it, gamma, tail, J, g, _ = run_plain(X, J, g, g, nbit, gamma, first_step, tail, rtol,
                                                tf.constant(0.0), *args)
        return X, it, gamma, tail, J, g

    def lbfgs_scaled(X, X_metric, J, g, driving, nbit, gamma, tail, rtol, gtol, *args):
        """Rebuild the scales at X_metric and run L-BFGS on the scaled
        variables from X until the residual in their metric is at most
        gtol; returns the velocity, iterations, the last curvature ratio,
        the energy tail, J and dJ/dX at the velocity, and its residual."""
        scale = scales(X_metric, *args)
        norm_driving = tf.maximum(tf.norm(scaled_gradient(driving, scale)), 1e-30)
        Y = to_scaled(X, scale)
        # a node frozen since X was computed holds its basal velocity at zero and
        # its column keeps its shear: the energy at the shifted X is needed then
        shifted = tf.reduce_any((scale[:, 0] == 0.0) & (X[:, 0] != 0.0))
        J, g = tf.cond(shifted, lambda: value_and_grad(from_scaled(Y, scale), *args),
                       lambda: (J, g))
        Y, it, gamma, tail, J, gs, g = run_scaled(
            Y, J, scaled_gradient(g, scale), g, nbit, gamma, tf.constant(0.0),
            tail, rtol, gtol * norm_driving, scale, *args)
        return from_scaled(Y, scale), it, gamma, tail, J, g, tf.norm(gs) / norm_driving

    def compiled(f):
        return tf.function(f, jit_compile=jit, reduce_retracing=True, autograph=False)

    return Objective(compiled(value_and_grad), compiled(scales), compiled(lbfgs),
                     compiled(lbfgs_scaled))


def _stalled(history: list[float], patience: int, rtol: float) -> bool:
    if len(history) <= patience:
        return False
    drop = history[-patience - 1] - history[-1]
    return drop <= rtol * max(abs(history[-1]), 1e-12)


def minimise(objective: Objective, X0: tf.Tensor, args: tuple, optimizer: str,
             step_size: float, nbitmax: int, rtol: float = 1e-6, patience: int = 10,
             gtol: float = 1e-2,
             refresh: int = 20, X_metric: tf.Tensor | None = None,
             precondition: bool = True) -> tuple[tf.Tensor, SolveReport]:
    """Minimise ``fg(X, *args)`` from ``X0``; returns the minimiser and a
    report. ``step_size``: Adam's learning rate (m/yr);
    ``gtol``: the largest scaled residual of a converged solve;
    ``refresh``: L-BFGS iterations before the first rebuild of the scales
    (the later runs between two rebuilds double in length);
    ``X_metric``: the velocity the first scales are built at (X0 when
    None; from rest, an estimate such as the shallow-ice field);
    ``precondition``: false runs L-BFGS on the velocities themselves (the
    scales still measure the residual)."""
    fg = objective.fg
    _, driving = fg(tf.zeros_like(X0), *args)
    J, g = fg(X0, *args)
    history = [float(J)]
    if optimizer == "adam" or not precondition:
        if optimizer == "adam":
            X, it = _adam(fg, X0, args, step_size, nbitmax, rtol, patience, history)
            _, g = fg(X, *args)
        else:
            X, it, _, _, g = _lbfgs(objective.lbfgs, (X0, J, g), args, nbitmax, rtol, patience,
                                    history, 1.0, step_size)
        scale = objective.scales(X, *args)
        residual = _norm(scaled_gradient(g, scale)) / max(
            _norm(scaled_gradient(driving, scale)), 1e-30)
        return X, SolveReport(it, history[0], history[-1], residual, residual <= gtol)
    X, it, gamma = X0, 0, 1.0  # the first L-BFGS step of a cycle: gamma times the gradient
    metric = X0 if X_metric is None else X_metric
    length = refresh
    while True:
        # one cycle between two rebuilds of the scales; it stops at once when converged
        X, done, gamma, J, g, residual = _lbfgs(
            objective.lbfgs_scaled, (X, metric, J, g, driving), args,
            min(length, nbitmax - it), rtol, patience, history, gamma, gtol)
        length *= 2
        residual = float(residual)
        it += done
        metric = X  # the later scales follow the velocity
        if (done == 0 or residual <= gtol or it >= nbitmax
                or _stalled(history, patience, rtol)):
            break
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


def _lbfgs(cycle, inputs, args, nbit, rtol, patience, history, gamma, last):
    """Call the compiled L-BFGS ``cycle`` (``lbfgs`` or ``lbfgs_scaled`` of
    :class:`Objective`) on its leading ``inputs`` for at most ``nbit``
    iterations, appending its energies to ``history``; ``last`` is the
    cycle's final argument before ``args`` (the first step of ``lbfgs``,
    the tolerance of ``lbfgs_scaled``). Returns the cycle's outputs with
    the iteration count and the last curvature ratio as Python numbers
    and the energy tail consumed."""
    n = patience + 1
    tail = [math.nan] * max(n - len(history), 0) + history[-n:]
    f32 = tf.float32
    X, it, gamma, tail, *rest = cycle(*inputs, tf.constant(nbit), tf.constant(gamma, f32),
                                      tf.constant(tail, f32), tf.constant(rtol, f32),
                                      tf.constant(last, f32), *args)
    it = int(it)
    history.extend(tail.numpy()[n - min(it, n):].tolist() if it else [])
    return (X, it, float(gamma), *rest)


def _dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(a * b)


def make_lbfgs_cycle(fg: Callable, memory: int = MEMORY) -> Callable:
    """One L-BFGS run (two-loop recursion over the last ``memory`` curvature
    pairs, backtracking Armijo line search) of the objective ``fg(Y, *args)
    -> (J, dJ/dY, aux)`` as a single loop, to be compiled by the caller:
    each pass evaluates ``fg`` once, at the line search's next trial point,
    and the caller reads one result per run instead of syncing at every dot
    product. ``aux`` is anything of the iterate the caller wants back (the
    gradient in other variables).

    The returned function ``cycle(Y0, J0, g0, aux0, nbit, gamma, first_step,
    tail, rtol, gstop, *args)`` starts from ``Y0`` and ``fg``'s values
    there, runs at most ``nbit`` iterations and stops early when the
    gradient's norm is at most ``gstop`` (converged; at once if ``g0``
    is), when the line search fails (40 halvings) or when the energy
    stalls: its drop over the last ``patience`` iterations at most ``rtol``
    times its magnitude, ``tail`` (patience + 1 energies, oldest first,
    NaN where there is no history yet) carrying the energies before this
    run. The first step, and any after a direction that does not descend,
    is the steepest descent: ``gamma`` times the gradient or, with
    ``first_step > 0``, a largest change of ``first_step``. Returns (Y,
    iterations, the last curvature ratio s.y/y.y, the updated tail, and
    J, dJ/dY and aux at Y)."""

    def cycle(Y0, J0, g0, aux0, nbit, gamma, first_step, tail, rtol, gstop, *args):
        def steepest(g, gamma):
            largest = first_step / tf.maximum(tf.reduce_max(tf.abs(g)), 1e-30)
            return tf.where(first_step > 0.0, largest, gamma)

        def direction(g, S, D, rho, ratio, gamma):
            """The quasi-Newton direction and its slope; the pairs are
            forgotten (rho zero) when it does not descend."""
            q, alphas = g, []
            for i in reversed(range(memory)):  # newest to oldest (empty slots have rho 0)
                a = rho[i] * _dot(S[i], q)
                q = q - a * D[i]
                alphas.append(a)
            q = q * ratio
            for i, a in zip(range(memory), reversed(alphas), strict=True):
                q = q + (a - rho[i] * _dot(D[i], q)) * S[i]
            descends = _dot(g, q) > 0.0
            d = tf.where(descends, -q, -g * steepest(g, gamma))
            return d, _dot(g, d), tf.where(descends, rho, tf.zeros_like(rho))

        def step(it, k, Y, f, g, aux, d, slope, t, S, D, rho, ratio, gamma, tail, stop):
            f_new, g_new, aux_new = fg(Y + t * d, *args)

            def accept():
                s, y = t * d, g_new - g
                sy, yy = _dot(s, y), _dot(y, y)
                keep = sy > 1e-12 * yy  # a curvature pair worth keeping
                S2 = tf.where(keep, tf.concat([S[1:], [s]], 0), S)  # oldest first
                D2 = tf.where(keep, tf.concat([D[1:], [y]], 0), D)
                rho2 = tf.where(keep, tf.concat([rho[1:], [1.0 / tf.where(keep, sy, 1.0)]], 0),
                                rho)
                curvature = sy / tf.maximum(yy, 1e-30)
                ratio2 = tf.where(keep, curvature, ratio)
                gamma2 = tf.where(sy > 0.0, curvature, gamma)
                tail2 = tf.concat([tail[1:], [f_new]], 0)
                # NaN until there are patience + 1 energies: not stalled
                stalled = tail2[0] - tail2[-1] <= rtol * tf.maximum(tf.abs(f_new), 1e-12)
                d2, slope2, rho2 = direction(g_new, S2, D2, rho2, ratio2, gamma2)
                converged = _dot(g_new, g_new) <= gstop * gstop
                stop = tf.reduce_any([stalled, converged, it + 1 >= nbit])
                return (it + 1, 0, Y + s, f_new, g_new, aux_new, d2, slope2, 1.0, S2, D2, rho2,
                        ratio2, gamma2, tail2, stop)

            def backtrack():
                return (it, k + 1, Y, f, g, aux, d, slope, 0.5 * t, S, D, rho, ratio, gamma,
                        tail, k + 1 >= LINE_SEARCH_HALVINGS)  # the line search has failed

            return tf.cond(f_new <= f + 1e-4 * t * slope, accept, backtrack)  # Armijo

        # the steps s and gradient changes y, oldest first: shifted in, not a
        # ring indexed by the newest slot, whose dynamic slices took XLA
        # minutes to compile (74 s at 100 m against 3 s)
        S = tf.zeros(tf.concat([[memory], tf.shape(Y0)], 0), Y0.dtype)
        rho = tf.zeros((memory,), Y0.dtype)  # 1 / s.y, zero in an empty slot
        ratio = steepest(g0, gamma)
        d, slope, rho = direction(g0, S, S, rho, ratio, gamma)
        stop = tf.logical_or(nbit <= 0, _dot(g0, g0) <= gstop * gstop)
        it, _, Y, J, g, aux, *_, gamma, tail, _ = tf.while_loop(
            lambda *v: tf.logical_not(v[-1]), step,
            (tf.constant(0), tf.constant(0), Y0, J0, g0, aux0, d, slope, tf.constant(1.0), S, S,
             rho, ratio, gamma, tail, stop))
        return Y, it, gamma, tail, J, g, aux

    return cycle

"""The `solved` method: minimise the Blatter-Pattyn energy with autodiff.

Two optimisers, both warm-started from the previous field: L-BFGS
(two-loop recursion, backtracking Armijo line search) on the column-scaled
variables of :mod:`._precondition`, whose scales are rebuilt at the current
velocity after ``refresh`` iterations, then after twice as many, and so on
(the first rebuilds follow a velocity still far from the answer, from rest;
later ones would mostly throw away the curvature pairs L-BFGS has gathered,
which a warm start needs more), each rebuild and the run up to the next one
a single compiled call (:func:`._lbfgs.make_lbfgs_cycle`), and Adam (fixed step in
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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from igm_plugins.processes.iceflow._lbfgs import make_lbfgs_cycle
from igm_plugins.processes.iceflow._physics import FlowConstants, energy, work_of_gravity
from igm_plugins.processes.iceflow._precondition import (
    column_scales,
    from_scaled,
    scaled_gradient,
    to_scaled,
)


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
    the velocity stack X (2, Nz, ny, nx, m/yr); ``driving(*args)`` dJ/dX
    at zero velocity (the driving stress); ``scales(X, *args)`` the
    column scales at X (see :mod:`._precondition`); ``lbfgs`` a compiled
    L-BFGS run on the velocities and ``lbfgs_scaled`` one on the
    column-scaled variables (see :func:`._lbfgs.make_lbfgs_cycle`)."""

    fg: Callable
    driving: Callable
    scales: Callable
    lbfgs: Callable
    lbfgs_scaled: Callable


def make_objective(consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor, periodic: bool,
                   jit: bool) -> Objective:
    """The :class:`Objective` of the Blatter-Pattyn energy (XLA with
    ``jit``) for the levels ``zeta`` (Nz,) and the mean slope (2,): one
    per process and configuration, so that the runs of a sweep worker (the
    basic launcher's process, a joblib worker) share its traced and
    compiled functions instead of tracing them again for every job."""
    return _shared_objective(consts, tuple(np.asarray(zeta, "float32").tolist()),
                             tuple(np.asarray(slope, "float32").tolist()), periodic, jit)


@functools.lru_cache(maxsize=16)
def _shared_objective(consts: FlowConstants, zeta: tuple[float, ...],
                      slope: tuple[float, float], periodic: bool, jit: bool) -> Objective:
    return build_objective(consts, tf.constant(zeta, tf.float32),
                           tf.constant(slope, tf.float32), periodic, jit)


def build_objective(consts: FlowConstants, zeta: tf.Tensor, slope: tf.Tensor, periodic: bool,
                    jit: bool) -> Objective:
    """A new :class:`Objective` (see :func:`make_objective`), traced afresh."""

    def energy_and_gradient(X, thk, usurf, A, C, dx):
        with tf.GradientTape() as tape:
            tape.watch(X)
            J = energy(X[0], X[1], thk, usurf, A, C, dx, zeta, slope, consts, periodic)
        return J, tape.gradient(J, X)

    # traced once, however many times a compiled call below calls it
    value_and_grad = tf.function(energy_and_gradient, reduce_retracing=True, autograph=False)

    def driving_stress(thk, usurf, A, C, dx):
        X = tf.zeros(tf.concat([[2, tf.shape(zeta)[0]], tf.shape(thk)], 0), thk.dtype)
        with tf.GradientTape() as tape:
            tape.watch(X)
            W = work_of_gravity(X[0], X[1], thk, usurf, A, C, dx, zeta, slope, consts, periodic)
        return tape.gradient(W, X)

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
        gtol. J, g: the energy and its gradient at X, and ``driving`` the
        gradient at zero velocity, carried from the previous cycle; a first
        cycle (J NaN) computes them here, in the same compiled call.
        Returns the velocity, iterations, the last curvature ratio, the
        energy tail, J and dJ/dX at the velocity, its residual, the driving
        stress and the energy at the start."""
        first = tf.math.is_nan(J)
        driving = tf.cond(first, lambda: driving_stress(*args), lambda: driving)
        scale = scales(X_metric, *args)
        norm_driving = tf.maximum(tf.norm(scaled_gradient(driving, scale)), 1e-30)
        Y = to_scaled(X, scale)
        # a node frozen since X was computed holds its basal velocity at zero and
        # its column keeps its shear: the energy at the shifted X is needed then
        shifted = tf.reduce_any((scale[:, 0] == 0.0) & (X[:, 0] != 0.0))
        J, g = tf.cond(first | shifted, lambda: value_and_grad(from_scaled(Y, scale), *args),
                       lambda: (J, g))
        J_start = J
        Y, it, gamma, tail, J, gs, g = run_scaled(
            Y, J, scaled_gradient(g, scale), g, nbit, gamma, tf.constant(0.0),
            tail, rtol, gtol * norm_driving, scale, *args)
        return (from_scaled(Y, scale), it, gamma, tail, J, g, tf.norm(gs) / norm_driving,
                driving, J_start)

    def compiled(f):
        return tf.function(f, jit_compile=jit, reduce_retracing=True, autograph=False)

    return Objective(compiled(value_and_grad), compiled(driving_stress), compiled(scales),
                     compiled(lbfgs), compiled(lbfgs_scaled))


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
    if optimizer == "adam" or not precondition:
        driving = objective.driving(*args)
        J, g = fg(X0, *args)
        history = [float(J)]
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
    # J NaN: the first cycle computes J, dJ/dX and the driving stress in its compiled call
    J, g, driving = tf.constant(math.nan), tf.zeros_like(X0), tf.zeros_like(X0)
    history: list[float] = []
    metric = X0 if X_metric is None else X_metric
    length = refresh
    while True:
        # one cycle between two rebuilds of the scales; it stops at once when converged
        X, done, gamma, J, g, residual, driving, J_start = _lbfgs(
            objective.lbfgs_scaled, (X, metric, J, g, driving), args,
            min(length, nbitmax - it), rtol, patience, history, gamma, gtol)
        if it == 0:  # the first cycle: its starting energy leads the history
            history.insert(0, float(J_start))
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

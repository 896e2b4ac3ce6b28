"""A compiled L-BFGS run: two-loop recursion over the last curvature pairs
and a backtracking Armijo line search, written as one ``tf.while_loop``
so that a whole run is a single call (and, with XLA, a single kernel
launch sequence) instead of a Python loop that syncs at every dot product.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

LINE_SEARCH_HALVINGS = 40  # down to 1e-12 of the first guess: the line search has failed
MEMORY = 5  # L-BFGS curvature pairs kept


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

        direction = tf.function(direction, autograph=False)  # one trace for both callers

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

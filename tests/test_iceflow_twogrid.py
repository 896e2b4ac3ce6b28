"""The two-grid correction of iceflow `solved`: the grid transfers, the
full approximation scheme's consistency (a converged field does not move)
and its use on the shipped glacier (fewer fine iterations, same answer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import hef_state

import igm_plugins.processes.iceflow as iceflow

tf = pytest.importorskip("tensorflow")


def bilinear(ny: int, nx: int) -> np.ndarray:
    y, x = np.mgrid[0:ny, 0:nx].astype("float32")
    return 3.0 + 0.5 * x - 2.0 * y + 0.25 * x * y


def test_prolongation_of_injected_bilinear_field_is_exact() -> None:
    """On an odd number of nodes, a bilinear field injected on every other
    node and interpolated back is the field itself; on an even number the
    padded copy of the last row and column keeps the shape."""
    from igm_plugins.processes.iceflow._twogrid import inject, prolong

    f = bilinear(9, 13)
    coarse = inject(tf.constant(f))
    assert tuple(coarse.shape) == (5, 7)
    np.testing.assert_allclose(np.asarray(prolong(coarse, tf.constant([9, 13]))), f, rtol=1e-6)
    even = tf.constant(np.stack([bilinear(10, 12)] * 3))  # a leading axis (levels) rides along
    coarse = inject(even)
    assert tuple(coarse.shape) == (3, 6, 7)
    back = np.asarray(prolong(coarse, tf.constant([10, 12])))
    assert back.shape == (3, 10, 12)
    np.testing.assert_allclose(back[:, :9, :11], np.asarray(even)[:, :9, :11], rtol=1e-6)


@pytest.fixture(scope="module")
def hef_50m():
    """The shipped glacier at 50 m: its IceFlow, inputs, converged field and
    the solver's window (one compilation for the module's tests)."""
    from igm_plugins.processes.iceflow._flow import IceFlow

    state = hef_state(1)
    flow = IceFlow(iceflow.Params(method="solved"), state, None)
    args = flow.inputs(state)
    X = flow.solve(args, flow.X)
    return flow, args, X, flow.window.follow(args[0])


def test_a_zero_gradient_is_a_fixed_point(hef_50m) -> None:
    """With the fine gradient zero (a converged field), the coarse problem's
    gradient at the injected field is zero too (its tau term): no coarse
    iteration, the field returned as it came."""
    from igm_plugins._window import crop

    flow, args, X, window = hef_50m
    args, X = crop(args, window), X[(slice(None), slice(None), *window)]
    J, _ = flow.objective.fg(X, *args)
    Xc, Jc, gc, its = flow.objective.coarse(
        X, J, tf.zeros_like(X), tf.constant(50), tf.constant(0.01), tf.fill([11], math.nan),
        tf.constant(1e-6), *args)
    assert int(its) == 0
    assert float(Jc) == float(J) and not np.any(np.asarray(gc))
    np.testing.assert_array_equal(np.asarray(Xc), np.asarray(X))


def test_a_warm_start_converges_in_fewer_fine_iterations(hef_50m) -> None:
    """The shipped glacier at 50 m, converged, then thinned by 3 %: the
    warm solve with the two-grid correction converges in at most half the
    fine iterations the solve without it takes (14 against 47 on
    2026-12-05), to the same velocity within 2 % (each is within about
    0.2 % of the exact minimiser at gtol 0.01)."""
    from igm_plugins._window import crop
    from igm_plugins.processes.iceflow._solver import minimise

    flow, args, X, window = hef_50m
    thinner = crop((args[0] * 0.97, args[1] - 0.03 * args[0], *args[2:]), window)
    X0 = X[(slice(None), slice(None), *window)]
    fields, reports = [], []
    for coarse_nbit in (0, 50):
        Y, report = minimise(flow.objective, X0, thinner, "lbfgs", 1.0, 300, 1e-6, 10,
                             gtol=0.01, coarse_nbit=coarse_nbit)
        assert report.converged, report
        fields.append(Y)
        reports.append(report)
    plain, corrected = reports
    assert plain.coarse_iterations == 0 and corrected.coarse_iterations > 0
    assert corrected.iterations <= plain.iterations / 2, (plain, corrected)
    assert float(tf.norm(fields[1] - fields[0]) / tf.norm(fields[0])) < 0.02


def test_small_windows_are_not_coarsened() -> None:
    """The correction runs on windows of at least 64 nodes a side only."""
    from igm_plugins.processes.iceflow._twogrid import coarsens

    assert coarsens((2, 10, 96, 128)) and coarsens((64, 64))
    assert not coarsens((2, 10, 48, 64)) and not coarsens((300, 63))

"""vert_flow: W against an exact incompressible velocity field, for both
methods, on uneven levels over a sloping bed and a thickening glacier."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from conftest import assert_choice_refused

from igm_core.testing import ProcessContract, make_state, run_process
from igm_plugins.processes import vert_flow

NX, NY, DX = 14, 10, 100.0
ZETA = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
U0, V0, L = 40.0, -15.0, 5000.0  # m/yr, m/yr, m
C, E, A, H0 = 0.08, -0.05, 0.01, 120.0  # bed slopes, thickness gradient, thickness (m)


def analytic_state():
    """Bed b = C x + E y, H = H0 + A x, u = U0 zeta (1 + x/L), v = V0.

    Incompressibility with w_b = u_b . grad b gives exactly
    w = V0 E + U0 (1 + x/L) (C zeta + A zeta^2 / 2) - U0 H zeta^2 / (2 L)."""
    x = DX * np.arange(NX)
    y = DX * np.arange(NY)
    xx, yy = np.meshgrid(x, y)
    z = ZETA[:, None, None]
    topg = 2000.0 + C * xx + E * yy
    thk = H0 + A * xx
    U = U0 * z * (1 + xx / L) + 0 * yy
    V = V0 + 0 * z * xx
    exact = V0 * E + U0 * (1 + xx / L) * (C * z + A * z**2 / 2) - U0 * thk * z**2 / (2 * L)
    state = make_state(nx=NX, ny=NY, dx=DX, topg=topg, thk=thk, U=U, V=V)
    state.zeta = ZETA.astype("float32")
    return state, exact


class TestContract(ProcessContract):
    plugin = vert_flow
    state_kwargs: ClassVar[dict] = {"thk": 100.0, "topg": 1000.0, "U": np.ones((3, 16, 20)),
                                    "V": np.ones((3, 16, 20)), "zeta": [0.0, 0.5, 1.0]}


@pytest.mark.parametrize("method, inner", [("kinematic", (slice(1, -1), slice(1, -1))),
                                           ("incompressibility", (slice(None), slice(None)))])
def test_w_matches_the_exact_incompressible_field(tmp_path, method, inner):
    state, exact = analytic_state()
    run_process(vert_flow, state, vert_flow.Params(method=method), steps=1, output_dir=tmp_path)
    w = state.W.numpy()
    assert w.shape == exact.shape
    # centred differences of quadratics (kinematic: interior) and trapezoids
    # of linear profiles are exact: only float32 round-off remains
    np.testing.assert_allclose(w[(slice(None), *inner)], exact[(slice(None), *inner)],
                               rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(state.wvelsurf.numpy(), w[-1])
    np.testing.assert_allclose(w[0], V0 * E, atol=1e-5)  # flow along the bed: w_b = u_b.grad b


def test_no_ice_no_vertical_velocity(tmp_path):
    state, _ = analytic_state()
    thk = state.thk.numpy()
    thk[:, :5] = 0.0
    import tensorflow as tf

    state.thk = tf.constant(thk)
    run_process(vert_flow, state, steps=1, output_dir=tmp_path)
    np.testing.assert_array_equal(state.W.numpy()[:, :, :5], 0.0)


def test_bad_method():
    assert_choice_refused(vert_flow.Params, "method", "magic", "[kinematic, incompressibility]")

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


@pytest.mark.parametrize("method", ["kinematic", "incompressibility"])
def test_a_small_glacier_in_a_large_domain_is_computed_on_its_window(method):
    """W on the window around the ice equals W computed on the whole grid,
    as the glacier moves across the domain and leaves it."""
    import tensorflow as tf

    ny, nx, nz = 64, 96, 5
    y, x = np.mgrid[0:ny, 0:nx].astype("float32")
    topg = 2000.0 + 0.1 * DX * x + 0.03 * DX * y
    zeta = ZETA.astype("float32")
    params = vert_flow.Params(method=method)
    state = make_state(nx=nx, ny=ny, dx=DX, topg=topg, thk=0.0, U=np.zeros((nz, ny, nx)),
                       V=np.zeros((nz, ny, nx)))
    state.zeta = zeta
    window = vert_flow.igm_process_initialize(params, state)
    assert window.current is None and not np.any(state.W.numpy())
    for cx in (20.0, 24.0, 70.0):
        r2 = ((x - cx) ** 2 + (y - 30.0) ** 2) / 8.0**2
        thk = 150.0 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
        U = np.where(thk > 0, 20.0 + x, 0.0) * zeta[:, None, None] + np.where(thk > 0, 5.0, 0.0)
        V = np.where(thk > 0, -3.0 - 0.5 * y, 0.0) * np.ones_like(zeta)[:, None, None]
        state.thk, state.U, state.V = (tf.constant(a, tf.float32) for a in (thk, U, V))
        vert_flow.igm_process_update(params, state, window)
        rows, cols = window.current
        assert rows.stop - rows.start < ny and cols.stop - cols.start < nx
        whole = vert_flow.vertical_velocity(state.U, state.V, zeta, state.thk, state.topg, DX,
                                            method).numpy()
        assert np.abs(whole).max() > 1.0  # m/yr: the glacier has a vertical velocity
        # the same operations on the same values, up to float32 round-off in
        # the cancelling terms (the fluxes' divergence against u . grad z)
        np.testing.assert_allclose(state.W.numpy(), whole, rtol=1e-5,
                                   atol=1e-6 * np.abs(whole).max())
        np.testing.assert_array_equal(state.wvelsurf.numpy(), state.W.numpy()[-1])

"""iceflow `sia`: closed-form shallow-ice velocities against exact values,
the staggered face velocities, the declared fields, and parameter errors."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from conftest import assert_choice_refused, compose

import igm_plugins.processes.iceflow as iceflow
from igm_core.errors import ConfigError
from igm_core.testing import ProcessContract, check_declared_fields, make_state, run_process

RHO_G = 910.0 * 9.81e-6  # MPa/m


def sia_params(**physics) -> iceflow.Params:
    p = iceflow.Params(method="sia")
    for key, value in physics.items():
        setattr(p.physics, key, value)
    return p


class TestContract(ProcessContract):
    plugin = iceflow
    state_kwargs: ClassVar[dict] = {"thk": 100.0, "topg": 1000.0}

    def test_declared_fields_are_written(self, tmp_path) -> None:
        state = make_state(thk=100.0, topg=1000.0)
        run_process(iceflow, state, params=sia_params(), steps=2, output_dir=tmp_path)
        check_declared_fields(iceflow, state)
        assert state.U.shape == (10, 16, 20)
        assert state.meta("zeta").dims == ("z",)


def test_ismip_hom_a_geometry_matches_the_sia_formula(tmp_path) -> None:
    """NOTES.md §4: on the ISMIP-HOM A geometry, u_s(x=0.75L, y=0.25L) =
    A/2 (rho g tan a)^3 H^4 = 119.69 m/yr (A = 100, H = 1500 m), any L."""
    L, n = 40_000.0, 40
    dx = L / n
    x = dx * np.arange(n)
    xx, yy = np.meshgrid(x, x)
    w = 2 * np.pi / L
    thk = 1000.0 - 500.0 * np.sin(w * xx) * np.sin(w * yy)  # H = s - b
    p = sia_params(init_arrhenius=100.0, sliding=False)
    p.numerics.periodic = True
    p.numerics.mean_slope_x = -np.tan(np.radians(0.5))
    state = make_state(nx=n, ny=n, dx=dx, thk=thk, usurf=0.0)
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
    j, i = int(0.25 * n), int(0.75 * n)
    assert thk[j, i] == pytest.approx(1500.0)
    assert float(state.uvelsurf[j, i]) == pytest.approx(119.69, rel=0.01)
    assert float(state.vvelsurf[j, i]) == pytest.approx(0.0, abs=1e-3)


def test_slab_profile_sliding_and_depth_mean(tmp_path) -> None:
    """Uniform slab: u(zeta) = u_b + 2A/(n+1)(rho g a)^n (H^(n+1) - (H(1-zeta))^(n+1)),
    C u_b^(1/3) = rho g H a, and ubar = u_b + (n+1)/(n+2) (u_s - u_b)."""
    H, a, A, C = 400.0, 0.04, 78.0, 0.0464
    p = sia_params(init_arrhenius=A, init_slidingco=C)
    p.numerics.periodic = True
    p.numerics.mean_slope_x = -a
    state = make_state(nx=6, ny=5, dx=500.0, thk=H, usurf=0.0)
    run_process(iceflow, state, params=p, steps=1, output_dir=tmp_path)
    zeta = np.asarray(state.zeta)
    ub = (RHO_G * H * a / C) ** 3
    exact = ub + 0.5 * A * (RHO_G * a) ** 3 * (H**4 - (H * (1 - zeta)) ** 4)
    np.testing.assert_allclose(np.asarray(state.U)[:, 2, 3], exact, rtol=1e-4)
    assert float(state.ubar[2, 3]) == pytest.approx(ub + 0.8 * (exact[-1] - ub), rel=1e-4)
    assert float(state.velsurf_mag[2, 3]) == pytest.approx(exact[-1], rel=1e-4)
    assert float(state.uvelbase[2, 3]) == pytest.approx(ub, rel=1e-4)
    assert np.allclose(np.asarray(state.V), 0.0, atol=1e-6)


def test_face_velocities_are_the_staggered_sia_formula(tmp_path) -> None:
    """ubar on an x-face: -2A/(n+2) (rho g)^n H_f^(n+1) |s'|^(n-1) s', with
    H_f the mean of the two nodes and s' their difference over dx (no
    slope along y here); the margin face takes half the edge thickness; the
    faces on the domain edge carry the edge nodes' ubar; no flow along y."""
    nx, ny, dx, A = 12, 5, 200.0, 78.0
    x = dx * np.arange(nx)
    thk = np.where(x < 1700.0, 300.0 - 0.1 * x, 0.0)  # ice in columns 0-8
    topg = 1000.0 - 0.05 * x
    state = make_state(nx=nx, ny=ny, dx=dx, thk=np.tile(thk, (ny, 1)),
                       topg=np.tile(topg, (ny, 1)))
    p = sia_params(sliding=False)
    p.numerics.staggered = True
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
    uf, vf = np.asarray(state.ubar_xface), np.asarray(state.vbar_yface)
    assert uf.shape == (ny, nx + 1) and vf.shape == (ny + 1, nx)
    s = topg + thk
    slope = np.diff(s) / dx
    Hf = 0.5 * (thk[1:] + thk[:-1])
    exact = -0.4 * A * RHO_G**3 * Hf**4 * slope**3  # faces 1 .. nx-1
    np.testing.assert_allclose(uf[2, 1:-1], exact, rtol=1e-4, atol=1e-6)
    assert exact[8] > 0 and Hf[8] == pytest.approx(0.5 * thk[8])  # the margin face moves ice
    assert np.all(uf[:, 10:-1] == 0.0)  # between ice-free nodes
    # the domain-edge faces carry the edge nodes' centred velocity
    centred = make_state(nx=nx, ny=ny, dx=dx, thk=np.tile(thk, (ny, 1)),
                         topg=np.tile(topg, (ny, 1)))
    run_process(iceflow, centred, params=sia_params(sliding=False), steps=0,
                output_dir=tmp_path / "centred")
    np.testing.assert_array_equal(uf[:, 0], np.asarray(centred.ubar)[:, 0])
    np.testing.assert_array_equal(uf[:, -1], np.asarray(centred.ubar)[:, -1])
    assert np.all(vf == 0.0)
    # one velocity: the cells' written velocity is the mean of their faces
    np.testing.assert_allclose(np.asarray(state.ubar)[2], 0.5 * (uf[2, 1:] + uf[2, :-1])
                               * (thk > 0), rtol=1e-6)


def test_face_velocities_of_a_periodic_slab_equal_the_node_velocity(tmp_path) -> None:
    p = sia_params(init_arrhenius=78.0, init_slidingco=0.0464)
    p.numerics.periodic = True
    p.numerics.mean_slope_x, p.numerics.mean_slope_y = -0.03, 0.02
    p.numerics.staggered = True
    state = make_state(nx=6, ny=5, dx=500.0, thk=400.0, usurf=0.0)
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
    np.testing.assert_allclose(np.asarray(state.ubar_xface), float(state.ubar[0, 0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.vbar_yface), float(state.vbar[0, 0]), rtol=1e-5)
    assert float(state.ubar[0, 0]) > 0 > float(state.vbar[0, 0])


def test_face_velocities_only_when_staggered(tmp_path) -> None:
    state = make_state(thk=100.0, topg=np.linspace(0, 300, 20)[None])
    run_process(iceflow, state, params=sia_params(), steps=1, output_dir=tmp_path)
    assert not state.has("ubar_xface") and not state.has("vbar_yface")


def test_staggered_needs_the_sia_method() -> None:
    with pytest.raises(ConfigError, match=r"processes\.iceflow\.numerics\.staggered applies to "
                       r"method sia only, got method 'solved'"):
        compose(iceflow.Params, {"method": "solved", "numerics": {"staggered": True}})


def test_ice_free_cells_do_not_move_and_defaults_are_provided(tmp_path) -> None:
    thk = np.zeros((12, 14), "float32")
    thk[3:9, 4:10] = 150.0
    state = make_state(nx=14, ny=12, dx=100.0, thk=thk, topg=np.linspace(0, 300, 14)[None])
    run_process(iceflow, state, params=sia_params(), steps=1, output_dir=tmp_path)
    assert np.all(np.asarray(state.U)[:, thk == 0] == 0.0)
    assert float(np.max(np.asarray(state.velsurf_mag))) > 1.0
    assert np.allclose(np.asarray(state.arrhenius), 78.0)
    assert np.allclose(np.asarray(state.slidingco), 0.0464)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("numerics.Nz", 1, "processes.iceflow.numerics.Nz must be at least 2"),
    ("emulator.warmup", -5, r"processes.iceflow.emulator.warmup must be 0 or more, got -5"),
    ("emulator.retrain_freq", -1,
     r"processes.iceflow.emulator.retrain_freq must be 0 or more, got -1"),
    ("emulator.solve_change", -1.0,
     r"processes.iceflow.emulator.solve_change must be 0 or more, got -1.0"),
    ("emulator.solve_gtol", 0.0,
     r"processes.iceflow.emulator.solve_gtol must be positive, got 0.0"),
    ("emulator.solve_max_cells", 0,
     r"processes.iceflow.emulator.solve_max_cells must be positive, got 0"),
    ("solver.refresh", 0, r"processes.iceflow.solver.refresh must be positive, got 0"),
    ("solver.gtol", 0.0, r"processes.iceflow.solver.gtol must be positive, got 0.0"),
    ("physics.frozen_bed_speed", -1.0,
     r"processes.iceflow.physics.frozen_bed_speed must be positive, got -1.0"),
])
def test_bad_parameters_name_the_key(key, value, message) -> None:
    values: dict = {"method": "sia"}
    target = values
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
    with pytest.raises(ConfigError, match=message):
        compose(iceflow.Params, values)


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("method", "magic", "[emulated, solved, sia, diagnostic]"),
    ("solver.optimizer", "sgd", "[adam, lbfgs]"),
    ("emulator.network.activation", "sigmoid", "[leaky_relu, relu, elu, gelu, tanh, swish]"),
])
def test_bad_choices_list_the_allowed_values(key, value, allowed) -> None:
    assert_choice_refused(iceflow.Params, key, value, allowed)


def test_the_written_velocity_carries_the_flux_that_moved_the_ice() -> None:
    """One velocity: a flow line (A = 100 MPa-3 yr-1, no sliding, flat bed,
    2 km cells) under a mass balance 1 m/yr at the divide falling by
    0.2 m/yr per km beyond 10 km, run with the staggered shallow-ice faces
    and thk's transport to a steady state. There the flux through each face
    is the balance flux (the mass balance summed from the divide), and the
    flux from the written cell velocity, H * ubar, matches it within 1 % from
    the divide to the mid-point: the velocity written is the one that moved
    the ice. The centred velocity on the same geometry is 3-6 % off (what
    was written before)."""
    import tensorflow as tf

    from igm_plugins.processes.iceflow._physics import (
        FlowConstants,
        sia_staggered,
        sia_velocity,
    )
    from igm_plugins.processes.thk import divergence, face_fluxes

    nx, ny, dx, dt = 21, 3, 2000.0, 0.8
    x = dx * (np.arange(nx) - nx // 2)
    smb = np.minimum(1.0, 2e-4 * (10e3 - np.abs(x)))
    A, C = tf.fill((ny, nx), 100.0), tf.zeros((ny, nx))
    consts, zeta = FlowConstants(sliding=False), tf.constant(np.linspace(0.0, 1.0, 5), tf.float32)
    rate = tf.constant(np.tile(smb, (ny, 1)), tf.float32)

    @tf.function
    def step(H):
        _, _, ubar, _, uf, vf = sia_staggered(H, H, A, C, dx, zeta, (0.0, 0.0), consts, False)
        fx, fy = face_fluxes(H, uf, vf, dt / dx)
        return tf.maximum(H - dt * divergence(fx, fy, dx) + dt * rate, 0.0), ubar, fx

    H = tf.zeros((ny, nx))
    for _ in range(3000):  # 2400 yr
        H, _, _ = step(H)
    after, ubar, fx = step(H)
    assert float(tf.reduce_max(tf.abs(after - H))) / dt < 1e-3  # steady
    h, u, faces = H.numpy()[1], ubar.numpy()[1], fx.numpy()[1]
    right = np.arange(nx // 2 + 1, nx // 2 + 6)  # 2 to 10 km from the divide
    balance_faces = dx * (np.cumsum(smb[nx // 2:]) - 0.5 * smb[nx // 2])  # faces right of cells
    balance = 0.5 * (balance_faces[right - nx // 2 - 1] + balance_faces[right - nx // 2])
    np.testing.assert_allclose(0.5 * (faces[right] + faces[right + 1]), balance, rtol=2e-3)
    np.testing.assert_allclose(h[right] * u[right], balance, rtol=1e-2)
    centred = sia_velocity(H, H, A, C, dx, zeta, (0.0, 0.0), consts, False)[2].numpy()[1]
    assert np.max(np.abs(h[right] * centred[right] / balance - 1.0)) > 0.03

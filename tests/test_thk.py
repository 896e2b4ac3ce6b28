"""thk: the mass budget closes to float precision, pure advection with a
known velocity (on the cells or on the faces), exact thickness under zero
flow, H >= 0."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from conftest import assert_choice_refused

from igm_core.errors import FieldError, PluginRuntimeError
from igm_core.testing import PluginRun, ProcessContract, make_state, run_process
from igm_plugins.processes import thk

DX = 100.0


class TestContract(ProcessContract):
    plugin = thk
    state_kwargs: ClassVar[dict[str, float]] = {"thk": 100.0, "topg": 1000.0, "ubar": 10.0,
                                                "vbar": -5.0}


def steps(module, state, n: int, dt: float, tmp_path, params=None):
    """``n`` steps of ``dt`` years; returns the process's memory (its budget)."""
    run = PluginRun(module, "processes", state, params, tmp_path).start()
    for _ in range(n):
        run.step(dt)
    return run.memory


def volume_m3(state) -> float:
    return float(np.sum(state.thk.numpy(), dtype="float64")) * state.dx**2


def test_zero_flow_gives_the_exact_thickness_and_applied_smb(tmp_path):
    nx, ny = 12, 8
    x = DX * np.arange(nx)
    smb = np.broadcast_to(-2.0 + 4.0 * x / x[-1], (ny, nx))  # -2 .. +2 m/yr, crosses zero
    state = make_state(nx=nx, ny=ny, dx=DX, thk=10.0, topg=500.0, ubar=0.0, vbar=0.0, smb=smb)
    v0 = volume_m3(state)
    budget = steps(thk, state, 16, 0.5, tmp_path)  # 8 years
    exact = np.maximum(10.0 + smb * 8.0, 0.0)
    np.testing.assert_allclose(state.thk.numpy(), exact, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(state.usurf.numpy(), 500.0 + exact, rtol=1e-6)
    assert budget.outflow == 0.0 and budget.clip == 0.0 and budget.sources == 0.0
    # the mass balance counted where it acts: on ice, or where it accumulates
    h, nominal = np.full((ny, nx), 10.0), 0.0
    for _ in range(16):
        nominal += np.sum(np.where((h > 0) | (smb > 0), 0.5 * smb, 0.0)) * DX**2
        h = np.maximum(h + 0.5 * smb, 0.0)
    assert budget.smb == pytest.approx(nominal, rel=1e-6)
    # and the ablation that found no ice left is given back
    assert budget.unmet_ablation > 0.01 * abs(nominal)
    assert volume_m3(state) - v0 == pytest.approx(budget.smb + budget.unmet_ablation, rel=1e-6)
    # the totals are published as scalar fields (m3) for the outputs
    assert float(state.budget_smb) == budget.smb
    assert float(state.budget_unmet_ablation) == budget.unmet_ablation


def test_other_sources_are_rates_declared_for_thk_and_budgeted_apart(tmp_path):
    """A basal melt handed as a rate (a field declared with rate_of='thk')
    thins the ice and lands in ``sources``, not in ``smb``."""
    from igm_core import Field

    state = make_state(nx=10, ny=6, dx=DX, thk=5.0, topg=0.0, ubar=0.0, vbar=0.0, smb=0.5,
                       bmb=-2.0)
    state.declare(Field("bmb", "m yr-1", "basal mass balance", rate_of="thk"))
    v0 = volume_m3(state)
    budget = steps(thk, state, 8, 0.5, tmp_path)  # 4 yr: 5 + 4 * (0.5 - 2) < 0: all ice goes
    np.testing.assert_allclose(state.thk.numpy(), 0.0, atol=1e-6)
    cells = 60 * DX**2
    # the ice lasts 5 / 1.5 = 3.33 yr: 7 steps act (the 7th removes what is left)
    assert budget.smb == pytest.approx(7 * 0.5 * 0.5 * cells, rel=1e-6)
    assert budget.sources == pytest.approx(7 * 0.5 * -2.0 * cells, rel=1e-6)
    assert budget.unmet_ablation == pytest.approx((7 * 0.5 * 1.5 - 5.0) * cells, rel=1e-5)
    assert volume_m3(state) - v0 == pytest.approx(
        budget.smb + budget.sources + budget.unmet_ablation, abs=1e-6 * v0)


@pytest.mark.parametrize("slope_type", ["superbee", "minmod", "upwind"])
def test_budget_closes_with_flow_smb_and_outflow(tmp_path, slope_type):
    nx, ny = 40, 30
    rng = np.random.default_rng(3)
    xx, yy = np.meshgrid(DX * np.arange(nx), DX * np.arange(ny))
    h = 150.0 * np.exp(-((xx - 2500) ** 2 + (yy - 1500) ** 2) / 1.2e6)
    h[h < 5] = 0.0  # a margin, and ice reaching the east edge
    u = 60.0 + 40.0 * np.sin(yy / 700.0) + rng.normal(0, 5, (ny, nx))
    v = 30.0 * np.cos(xx / 900.0)
    smb = 1.5 - 3.0 * xx / xx.max()
    state = make_state(nx=nx, ny=ny, dx=DX, thk=h, topg=0.0, ubar=u, vbar=v, smb=smb)
    v0 = volume_m3(state)
    b = steps(thk, state, 60, 0.25, tmp_path, thk.Params(slope_type=slope_type))
    assert b.outflow > 0.01 * v0  # ice left through the east edge
    assert b.clip == 0.0  # the transport step alone never made H < 0
    change = volume_m3(state) - v0
    assert change == pytest.approx(b.smb + b.unmet_ablation - b.outflow + b.clip, abs=1e-6 * v0)
    assert np.all(state.thk.numpy() >= 0.0)
    np.testing.assert_array_equal(state.usurf.numpy(), state.topg.numpy() + state.thk.numpy())


def advect(slope_type: str, tmp_path, on_faces: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A 1-D bump carried east at 100 m/yr for 20 yr (20 cells), CFL 0.25;
    the velocity given on the cells, or on the faces with zero on the cells."""
    nx, ny = 80, 3
    x = DX * np.arange(nx)
    bump = 100.0 * np.exp(-(((x - 2000.0) / 500.0) ** 2))
    faces = {"ubar_xface": np.full((ny, nx + 1), 100.0), "vbar_yface": np.zeros((ny + 1, nx))}
    state = make_state(nx=nx, ny=ny, dx=DX, thk=np.tile(bump, (ny, 1)), topg=0.0,
                       ubar=0.0 if on_faces else 100.0, vbar=0.0, **(faces if on_faces else {}))
    run_process(thk, state, thk.Params(slope_type=slope_type), steps=80, dt=0.25,
                output_dir=tmp_path)
    exact = 100.0 * np.exp(-(((x - 4000.0) / 500.0) ** 2))
    return x, bump, state.thk.numpy()[1], np.max(np.abs(state.thk.numpy()[1] - exact))


def test_pure_advection_moves_the_bump_by_u_t(tmp_path):
    x, bump, final, err_superbee = advect("superbee", tmp_path)
    np.testing.assert_allclose(final.sum(), bump.sum(), rtol=1e-6)  # no mass lost or made
    centroid = np.sum(x * final) / final.sum() - np.sum(x * bump) / bump.sum()
    assert centroid == pytest.approx(2000.0, abs=1.0)
    # TVD schemes clip a smooth peak; superbee least (measured 5.9 m), then
    # minmod (14.5 m), then first-order upwind (32.6 m)
    assert err_superbee < 8.0
    assert final.max() > 93.0
    errors = [advect(s, tmp_path)[-1] for s in ("minmod", "upwind")]
    assert err_superbee < errors[0] < errors[1]
    assert errors[1] > 4 * err_superbee


def test_face_velocities_replace_the_cell_ones(tmp_path):
    _, _, on_cells, _ = advect("superbee", tmp_path)
    _, _, on_faces, _ = advect("superbee", tmp_path, on_faces=True)
    np.testing.assert_array_equal(on_faces, on_cells)


def test_face_velocity_of_the_wrong_shape(tmp_path):
    state = make_state(nx=20, ny=16, thk=1.0, topg=0.0, ubar=0.0, vbar=0.0,
                       ubar_xface=np.zeros((16, 20)), vbar_yface=np.zeros((17, 20)))
    with pytest.raises(FieldError, match=r"processes\.thk: State field 'ubar_xface' has shape "
                       r"\(16, 20\), expected \(16, 21\)"):
        run_process(thk, state, steps=1, output_dir=tmp_path)


def test_a_blown_up_flow_is_a_one_line_error(tmp_path):
    state = make_state(thk=10.0, topg=0.0, ubar=np.nan, vbar=0.0)
    with pytest.raises(PluginRuntimeError, match=r"processes\.thk: the ice thickness is no "
                       r"longer finite at t=0\.5 yr \(the flow blew up\): shorten the step"):
        run_process(thk, state, steps=1, dt=0.5, output_dir=tmp_path)


def test_bad_slope_type():
    assert_choice_refused(thk.Params, "slope_type", "vanleer", "[superbee, minmod, upwind]")


def test_a_volume_grown_a_hundredfold_stops_the_run_with_its_budget(tmp_path):
    # 1 m of ice on a 20 x 16 grid, 600 m/yr of accumulation: the reference
    # volume is 10 m over the domain, exceeded 100 times after 2 years
    state = make_state(thk=1.0, topg=0.0, ubar=0.0, vbar=0.0, smb=600.0)
    with pytest.raises(PluginRuntimeError) as info:
        run_process(thk, state, steps=3, dt=1.0, output_dir=tmp_path)
    assert str(info.value) == (
        "processes.thk: the ice volume grew to 3.843 km3 at t=2 yr (step 1), more than 100 "
        "times 0.032 km3 (budget since the start: smb and other sources +3.84, clipping +0, out "
        "through the edges 0 km3); most of it from the surface mass balance and the other "
        "sources: check their parameters and units (m ice per year)")


@pytest.mark.parametrize("slope_type", ["superbee", "upwind"])
@pytest.mark.parametrize("centre", [(30.0, 40.0), (30.0, 92.0)])
def test_the_transport_on_the_ice_window_is_the_whole_grid_s(slope_type, centre):
    """A small ice cap in a large domain (inside it, and flowing out through
    its east edge): the windowed fluxes give the whole grid's divergence and
    edge outflow, with velocities everywhere (faces between ice-free cells
    carry no flux whatever their velocity)."""
    ny, nx, dt = 64, 96, 0.5
    y, x = np.mgrid[0:ny, 0:nx].astype("float32")
    r2 = ((x - centre[1]) ** 2 + (y - centre[0]) ** 2) / 9.0**2
    H = 200.0 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    u, v = 30.0 + 0.2 * x, -10.0 + 0.1 * y  # m/yr, nonzero on every cell
    state = make_state(nx=nx, ny=ny, dx=DX, thk=H, topg=1000.0, ubar=u, vbar=v)
    fx, fy, div = thk.windowed_transport(state, dt, slope_type)
    assert fx.shape[0] < ny and fx.shape[1] < nx + 1  # a window, not the grid
    uf, vf = thk.node_to_face(state.ubar, state.vbar)
    Fx, Fy = thk.face_fluxes(state.thk, uf, vf, dt / DX, slope_type)
    whole = thk.divergence(Fx, Fy, DX).numpy()
    assert np.abs(whole).max() > 1.0  # m/yr: the ice moves
    np.testing.assert_array_equal(div.numpy(), whole)
    outflow = thk.outflow_rate(Fx, Fy, DX)
    assert thk.outflow_rate(fx, fy, DX) == outflow
    assert (outflow > 1e4) == (centre[1] > nx - 9)  # m3/yr out through the east edge
    empty = make_state(nx=nx, ny=ny, dx=DX, thk=0.0, topg=1000.0, ubar=u, vbar=v)
    fx, fy, div = thk.windowed_transport(empty, dt, slope_type)
    assert thk.outflow_rate(fx, fy, DX) == 0.0 and not np.any(div.numpy())

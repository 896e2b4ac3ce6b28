"""iceflow `solved`: the Blatter-Pattyn energy minimiser against the exact
slab profile, the shallow-ice limit and ISMIP-HOM experiments A and C
(Pattyn et al. 2008; reference data in tests/data/ismip_hom/)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

import igm_plugins.processes.iceflow as iceflow
from igm_core.testing import make_state, run_process

RHO_G = 910.0 * 9.81e-6  # MPa/m
DATA = Path(__file__).parent / "data" / "ismip_hom"


def solved_params(**physics) -> iceflow.Params:
    p = iceflow.Params(method="solved")
    p.solver.nbitmax = 3000
    p.numerics.jit = False  # small grids: XLA compilation costs more than it saves
    for key, value in physics.items():
        setattr(p.physics, key, value)
    return p


@pytest.mark.parametrize("sliding", [False, True])
def test_slab_matches_the_exact_profile(tmp_path, sliding) -> None:
    """ice-flow-physics.md: u(z) = u_b + 2A/(n+1)(rho g a)^n (H^(n+1) - (s-z)^(n+1)),
    C u_b^(1/m) = rho g H a; a discretisation off by more than a few % has a factor wrong."""
    H, a, A, C = 500.0, 0.05, 78.0, 0.0464
    p = solved_params(init_arrhenius=A, init_slidingco=C, sliding=sliding)
    p.numerics.periodic = True
    p.numerics.mean_slope_x = -a
    state = make_state(nx=6, ny=6, dx=1000.0, thk=H, usurf=0.0)
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
    zeta = np.asarray(state.zeta)
    ub = (RHO_G * H * a / C) ** 3 if sliding else 0.0
    exact = ub + 0.5 * A * (RHO_G * a) ** 3 * (H**4 - (H * (1 - zeta)) ** 4)
    U = np.asarray(state.U)
    np.testing.assert_allclose(U[1:, 2, 3], exact[1:], rtol=0.03)
    assert float(U[0, 2, 3]) == pytest.approx(ub, rel=0.03, abs=1e-6)
    assert np.ptp(U[-1]) < 1e-3 * U[-1].max()  # uniform in the plane
    assert np.abs(np.asarray(state.V)).max() < 1e-3 * U[-1].max()


def test_tends_to_sia_on_a_thin_wide_sheet(tmp_path) -> None:
    """A 3000 m thick dome of radius 600 km (aspect 1/200): solved and sia
    surface speeds differ by less than 5% (relative L2) inside 0.7 R."""
    n, dx, R, H0 = 25, 55_000.0, 600_000.0, 3000.0
    xy = dx * (np.arange(n) - n // 2)
    xx, yy = np.meshgrid(xy, xy)
    r = np.hypot(xx, yy) / R
    thk = np.where(r < 1, H0 * np.clip(1 - r ** (4 / 3), 0, 1) ** (3 / 7), 0.0)
    speeds = {}
    for method in ("sia", "solved"):
        p = solved_params(sliding=False)
        p.method = method
        state = make_state(nx=n, ny=n, dx=dx, thk=thk, usurf=thk)
        run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
        speeds[method] = np.asarray(state.velsurf_mag)
    inner = r < 0.7
    diff = np.linalg.norm((speeds["solved"] - speeds["sia"])[inner])
    rel = diff / np.linalg.norm(speeds["sia"][inner])
    print(f"relative L2 difference solved vs sia inside 0.7 R: {rel:.4f}")
    assert rel < 0.05
    assert speeds["sia"][inner].max() > 1.0


def test_warm_start_needs_few_iterations(tmp_path) -> None:
    """A second solve on the same geometry starts at the minimiser: it stops
    after a few iterations, with the same field."""
    from igm_plugins.processes.iceflow._flow import IceFlow

    thk = np.zeros((14, 16), "float32")
    thk[3:11, 3:13] = 200.0
    state = make_state(nx=16, ny=14, dx=200.0, thk=thk, topg=np.linspace(0, 400, 16)[None])
    flow = IceFlow(solved_params(), state, None)
    args = flow.inputs(state)
    first = flow.solve(args, flow.X)
    e1 = flow.energy_of(first, args)
    assert e1 < flow.energy_of(flow.X, args)
    from igm_plugins.processes.iceflow._solver import minimise

    again, report = minimise(flow.fg, first, args, "lbfgs", 1.0, 200, 1e-6, 10)
    assert report.iterations <= 15
    assert report.energy_end <= e1 + 1e-6 * abs(e1)
    np.testing.assert_allclose(np.asarray(again), np.asarray(first), atol=0.05 * float(
        np.abs(np.asarray(first)).max()))


def test_solver_debug_lines_follow_the_igm_log_level(tmp_path, caplog) -> None:
    """iceflow logs under "igm", so core.logging_level=DEBUG (the level of the
    "igm" logger) shows its per-solve lines."""
    thk = np.zeros((14, 16), "float32")
    thk[3:11, 3:13] = 200.0
    state = make_state(nx=16, ny=14, dx=200.0, thk=thk, topg=np.linspace(0, 400, 16)[None])
    with caplog.at_level(logging.DEBUG, logger="igm"):
        run_process(iceflow, state, params=solved_params(), steps=1, output_dir=tmp_path)
    solves = [r for r in caplog.records if r.getMessage().startswith("iceflow solve:")]
    assert len(solves) == 2  # initialisation and one step
    assert all(r.name.startswith("igm.") for r in solves)


# -- ISMIP-HOM -------------------------------------------------------------------------------


def load_profile(exp: str, L_km: int) -> dict[str, np.ndarray]:
    path = DATA / f"exp{exp}_L{L_km:03d}_profile_y0.25.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def peak_range(exp: str, L_km: int) -> tuple[float, float]:
    """[min, max] of the peak v_x over the full-Stokes and Blatter-Pattyn ensembles."""
    with (DATA / "peak_vx_summary.csv").open() as f:
        rows = [r for r in csv.DictReader(f)
                if r["experiment"] == exp and int(r["L_km"]) == L_km and r["group"] in ("fs", "bp")]
    return (min(float(r["peak_vx_min"]) for r in rows),
            max(float(r["peak_vx_max"]) for r in rows))


def ismip_hom_surface_vx(exp: str, L_km: int, n: int, nz: int, tmp_path) -> np.ndarray:
    """Solve ISMIP-HOM experiment A or C on an n x n periodic grid; returns v_x
    on y = L/4 at x/L = 0, 1/n, ..., 1 (m/yr)."""
    L = 1000.0 * L_km
    dx = L / n
    x = dx * np.arange(n)
    xx, yy = np.meshgrid(x, x)
    bumps = np.sin(2 * np.pi * xx / L) * np.sin(2 * np.pi * yy / L)
    p = solved_params(init_arrhenius=100.0)  # A = 1e-16 Pa^-3 a^-1
    p.numerics.periodic = True
    p.numerics.Nz = nz
    if exp == "A":  # no slip over a bumpy bed, surface slope 0.5 degree
        thk, slidingco = 1000.0 - 500.0 * bumps, 0.0
        p.physics.sliding = False
        p.numerics.mean_slope_x = -np.tan(np.radians(0.5))
    else:  # flat bed, slope 0.1 degree, linear sliding beta^2 = 1000 (1 + bumps) Pa a/m
        thk, slidingco = 1000.0, 1e-3 * (1.0 + bumps)
        p.physics.exp_weertman = 1.0
        p.numerics.mean_slope_x = -np.tan(np.radians(0.1))
    state = make_state(nx=n, ny=n, dx=dx, thk=thk, usurf=0.0, slidingco=slidingco)
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path)
    u = np.asarray(state.uvelsurf)[n // 4]
    return np.append(u, u[0])


def check_ismip_hom(exp: str, L_km: int, n: int, nz: int, tmp_path, tol: float) -> None:
    """NOTES.md §4: e_rms vs the full-Stokes mean <= tol, peak inside the ensemble."""
    ref = load_profile(exp, L_km)
    u = ismip_hom_surface_vx(exp, L_km, n, nz, tmp_path)
    xh = np.arange(n + 1) / n
    ui = np.interp(ref["x_hat"], xh, u)
    e_rms = np.sqrt(np.mean((ui - ref["fs_vx_mean"]) ** 2)) / ref["fs_vx_mean"].max()
    assert e_rms <= tol, f"e_rms {100 * e_rms:.2f}%"
    lo, hi = peak_range(exp, L_km)
    assert lo <= u.max() <= hi


@pytest.mark.parametrize("L_km", [20, 80])
@pytest.mark.parametrize("exp", ["A", "C"])
def test_ismip_hom_coarse(tmp_path, exp, L_km) -> None:
    check_ismip_hom(exp, L_km, n=24, nz=6, tmp_path=tmp_path, tol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("L_km", [10, 20, 40, 80, 160])
@pytest.mark.parametrize("exp", ["A", "C"])
def test_ismip_hom_sweep(tmp_path, exp, L_km) -> None:
    tol = 0.08 if (exp, L_km) == ("C", 160) else 0.05
    check_ismip_hom(exp, L_km, n=40, nz=10, tmp_path=tmp_path, tol=tol)

"""iceflow `sia` with the `thk` process on the Halfar dome (Bueler test B):
NOTES.md §1, t0 -> t0 + 1000 yr, on 61 x 61 (40 km) and 121 x 121 (20 km)
grids, with NOTES.md §7's 'Halfar short' bounds. The thickness flux is the
`thk` plugin's (limited upwind thickness) with the face velocities that `sia`
writes with `numerics.staggered` (Mahaffy-type). Measured: mean |dH| 6.0 m at 40 km and
2.5 m at 20 km, max 167 m at 40 km, dome 0.5 % and 0.2 %."""

from __future__ import annotations

import numpy as np
import pytest

import igm_plugins.processes.iceflow as iceflow
import igm_plugins.processes.thk as thk_process
import igm_plugins.processes.time as time_process
from igm_core.testing import make_state, run_context

N, A_GLEN = 3, 100.0  # Glen exponent, A = 1e-16 Pa^-3 a^-1 in MPa^-3 a^-1
H0, R0, T0 = 3600.0, 750_000.0, 422.4526  # m, m, yr (t0 of test B)


def halfar(r: np.ndarray, t: float) -> np.ndarray:
    """Exact thickness (m) at radius r (m) and time t (yr)."""
    tau = t / T0
    xi = tau ** (-1 / 18) * r / R0
    return np.where(xi < 1, H0 * tau ** (-1 / 9)
                    * np.clip(1 - xi ** (4 / 3), 0, None) ** (3 / 7), 0.0)


def run_halfar(mx: int, years: float, tmp_path) -> tuple[np.ndarray, np.ndarray, float]:
    """Evolve the dome on an mx x mx grid over [-1200, 1200] km; returns
    (model H, exact H, relative volume change)."""
    dx = 2_400_000.0 / (mx - 1)
    xy = dx * (np.arange(mx) - (mx - 1) // 2)
    xx, yy = np.meshgrid(xy, xy)
    r = np.hypot(xx, yy)
    state = make_state(nx=mx, ny=mx, dx=dx, t=T0, topg=0.0, thk=halfar(r, T0))
    p = iceflow.Params(method="sia")
    p.numerics.staggered = True
    p.physics.init_arrhenius = A_GLEN
    p.physics.sliding = False
    tp = thk_process.Params()
    for name in ("U", "V", "ubar", "vbar", "uvelsurf", "vvelsurf", "uvelbase", "vvelbase",
                 "velbar_mag", "velsurf_mag", "arrhenius", "slidingco", "divflux"):
        state.declare(name)
    state.declare(iceflow.ZETA)
    flow = iceflow.igm_process_initialize(p, state, run_context(tmp_path))
    budget = thk_process.igm_process_initialize(tp, state)
    v0 = state.ice_volume()
    t_end = T0 + years
    while state.t < t_end - 1e-6:
        # explicit staggered SIA: dt <= dx^2 / (4 D), here 0.8 of it
        state.dt = min(0.2 * dx**2 / time_process.max_face_diffusivity(state), t_end - state.t)
        state.t = state.t + state.dt
        thk_process.igm_process_update(tp, state, budget)
        iceflow.igm_process_update(state, flow)
        state.it += 1
    return np.asarray(state.thk, "float64"), halfar(r, state.t), state.ice_volume() / v0 - 1


@pytest.fixture(scope="module")
def errors(tmp_path_factory) -> dict[int, dict[str, float]]:
    out = {}
    for mx in (61, 121):
        H, exact, dvol = run_halfar(mx, 1000.0, tmp_path_factory.mktemp(f"halfar{mx}"))
        c = (mx - 1) // 2
        out[mx] = {"dome": abs(H[c, c] / exact[c, c] - 1),
                   "mean": float(np.mean(np.abs(H - exact))),
                   "max": float(np.max(np.abs(H - exact))), "dvol": abs(dvol),
                   "asymmetry": float(max(np.max(np.abs(H - H.T)),
                                          np.max(np.abs(H - H[::-1])),
                                          np.max(np.abs(H - H[:, ::-1]))))}
    return out


@pytest.mark.parametrize("mx", [61, 121])
def test_halfar_dome_volume_and_mean_error(errors, mx) -> None:
    """NOTES.md §7 'Halfar short': dome <= 1 %, volume conserved to 1e-5,
    mean |dH| over all nodes <= 10 m."""
    assert errors[mx]["dome"] <= 0.01
    assert errors[mx]["dvol"] <= 1e-5
    assert errors[mx]["mean"] <= 10.0


def test_halfar_margin_error_and_symmetry_at_40_km(errors) -> None:
    """NOTES.md §7 'Halfar short' on 61 x 61: max |dH| <= 250 m (at the
    margin) and the dome stays symmetric (float32 round-off)."""
    assert errors[61]["max"] <= 250.0
    assert errors[61]["asymmetry"] <= 0.05


def test_halfar_mean_error_falls_with_resolution(errors) -> None:
    """The mean error falls by at least 1.5 per halving of the cell size
    (NOTES.md §7)."""
    assert errors[61]["mean"] / errors[121]["mean"] >= 1.5

"""Make the figures and numbers of the documentation's Verification page.

    python docs/scripts/verification_plots.py [--out docs/img/verification] [--quick]

Runs the installed model (through its plugins, as ``igm_run`` does) on
problems with exact or published solutions and writes one PNG per problem
plus ``numbers.json``:

- ``halfar.png``: the Halfar (1981) dome (Bueler et al. 2005, test B) with
  ``iceflow`` method ``sia`` (staggered), ``time`` and ``thk``, from
  t0 = 422.45 yr to t0 + 1000 yr, on 40 km and 20 km grids (61 and 121
  nodes), against the exact thickness;
- ``slab.png``: the velocity profile of a uniform inclined slab, with and
  without Weertman sliding, from methods ``sia`` and ``solved`` against the
  exact shallow-ice and first-order profiles;
- ``ismip_hom_a.png``: ISMIP-HOM experiment A (Pattyn et al. 2008), surface
  velocity along y = L/4 from method ``solved`` against the full-Stokes mean
  and the spread of the published higher-order and full-Stokes models
  (data in ``tests/data/ismip_hom/``);
- ``ismip_hom_e.png``: ISMIP-HOM experiment E (Haut Glacier d'Arolla
  flowline, E000 and E001) from ``solved`` against the participants
  (``../shared/verification/ismip-hom/raw-e``) and, when
  ``igm_flow_cases.json`` is beside the figures (written by
  ``bench/igm_flow_cases.py`` with IGM 3.2.1's Python), IGM's converged
  solve; ``numbers.json`` also gets our column on the steep slab of
  ``bench/verification_cases.py`` and its exact surface speeds.

``--quick`` uses coarser grids (a few minutes on two cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import verification_cases as cases  # noqa: E402

ISMIP = ROOT / "tests" / "data" / "ismip_hom"
RHO_G = 910.0 * 9.81e-6  # MPa/m
A_TEST = 100.0  # MPa^-3 yr^-1 (1e-16 Pa^-3 a^-1), Bueler and ISMIP-HOM
N_GLEN = 3.0
SLAB = {"H": 500.0, "slope": 0.05, "A": 78.0, "C": 0.0464}  # m, 1, MPa^-3 yr^-1, MPa yr^1/3 m^-1/3


def slab_exact(zeta: np.ndarray, sliding: bool, first_order: bool = True) -> np.ndarray:
    """Exact U (m/yr) of the slab at relative heights ``zeta``, first-order
    or shallow-ice (verification_cases.slab_velocity)."""
    return cases.slab_velocity(zeta, SLAB["H"], SLAB["slope"], SLAB["A"],
                               SLAB["C"] if sliding else None, first_order)


# -- Halfar ----------------------------------------------------------------------


def halfar_thickness(r: np.ndarray, t: float, H0: float = 3600.0, R0: float = 750e3) -> np.ndarray:
    """Exact Halfar (1981) dome thickness (m) at radius ``r`` (m) and time
    ``t`` (yr), n = 3, no mass balance (Bueler et al. 2005, test B)."""
    n = N_GLEN
    gamma = 2.0 * A_TEST * RHO_G**n / (n + 2.0)  # m^-3 yr^-1
    alpha, beta = 1.0 / 9.0, 1.0 / 18.0
    t0 = (beta / gamma) * ((2 * n + 1) / (n + 1)) ** n * R0 ** (n + 1) / H0 ** (2 * n + 1)
    tau = t / t0
    inner = 1.0 - (tau ** (-beta) * r / R0) ** ((n + 1) / n)
    return np.where(inner > 0, H0 * tau ** (-alpha) * np.clip(inner, 0, None) ** (n / (2 * n + 1)),
                    0.0)


def _write_input(path: Path, x: np.ndarray, y: np.ndarray, thk: np.ndarray) -> Path:
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", x.size)
        ds.createDimension("y", y.size)
        for name, values in (("x", x), ("y", y)):
            ds.createVariable(name, "f8", (name,))[:] = values
        for name, values in (("topg", np.zeros_like(thk)), ("thk", thk)):
            ds.createVariable(name, "f4", ("y", "x"))[:] = values
    return path


def run_model(input_path: Path, params: dict, folder: Path):
    """Run the installed plugins inputs.local + the given processes, with
    ``params`` = {process name: Params instance}; returns the final State."""
    from igm_core import engine
    from igm_core.context import RunContext
    from igm_core.plugins import discover

    found = discover()
    local = found["inputs"]["local"]
    selection = {
        "inputs": [(local, local.load().Params(filename=str(input_path)))],
        "processes": [(found["processes"][name], p) for name, p in params.items()],
        "outputs": [],
    }
    state, result = engine.run(selection, RunContext(folder, launch_dir=folder, data_dir=folder),
                               progress="off")
    return state, result


def halfar(cells: list[int], years: float, folder: Path) -> dict:
    """Halfar dome on a 2400 km box with ``cells`` nodes per side."""
    import igm_plugins.processes.iceflow as iceflow
    import igm_plugins.processes.thk as thk_process
    import igm_plugins.processes.time as time_process

    t0 = 422.45
    out = {}
    for n in cells:
        x = np.linspace(-1200e3, 1200e3, n)
        xx, yy = np.meshgrid(x, x)
        r = np.hypot(xx, yy)
        start = halfar_thickness(r, t0)
        path = _write_input(folder / f"halfar_{n}.nc", x, x, start)
        flow = iceflow.Params(method="sia")
        flow.physics.init_arrhenius = A_TEST
        flow.physics.sliding = False
        flow.numerics.Nz = 2
        flow.numerics.staggered = True
        clock = time_process.Params(start=t0, end=t0 + years, save=years, step_max=2.0)
        state, _ = run_model(path, {"iceflow": flow, "time": clock,
                                    "thk": thk_process.Params()}, folder)
        H = np.asarray(state.thk, dtype="float64")
        exact = halfar_thickness(r, t0 + years)
        dome = (n // 2, n // 2)
        out[n] = {
            "dx_km": (x[1] - x[0]) / 1e3,
            "dome_error_m": float(H[dome] - exact[dome]),
            "dome_exact_m": float(exact[dome]),
            "mean_abs_error_m": float(np.mean(np.abs(H - exact))),
            "max_abs_error_m": float(np.max(np.abs(H - exact))),
            "volume_rel_change": float(abs(H.sum() - start.sum()) / start.sum()),
            "profile_x_km": (x / 1e3).tolist(),
            "profile_model_m": H[n // 2].tolist(),
        }
    out["t_end"] = t0 + years
    return out


def plot_halfar(res: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = np.linspace(-1200, 1200, 2001)
    ax.plot(xs, halfar_thickness(np.abs(xs) * 1e3, res["t_end"]), "k-", lw=2,
            label=f"exact, t = {res['t_end']:g} yr")
    for key, r in res.items():
        if key == "t_end":
            continue
        ax.plot(r["profile_x_km"], r["profile_model_m"], "o-", ms=3,
                label=f"sia + thk, dx = {r['dx_km']:g} km (dome error "
                      f"{r['dome_error_m']:+.1f} m)")
    ax.set(xlabel="x (km), y = 0", ylabel="ice thickness (m)",
           title="Halfar dome after 1000 years (Bueler et al. 2005, test B)")
    ax.legend(loc="lower center", fontsize=8)
    fig.savefig(path, dpi=110)


# -- slab ---------------------------------------------------------------------------


def slab(folder: Path) -> dict:
    """A 500 m slab on a 0.05 slope: U(zeta) from sia and solved, with and
    without sliding, and the exact profile (m/yr)."""
    import igm_plugins.processes.iceflow as iceflow
    from igm_core.testing import make_state, run_process

    out: dict = {}
    for sliding in (False, True):
        case = "sliding" if sliding else "noslip"
        for method in ("sia", "solved"):
            p = iceflow.Params(method=method)
            p.physics.init_arrhenius = SLAB["A"]
            p.physics.init_slidingco = SLAB["C"]
            p.physics.sliding = sliding
            p.numerics.periodic = True
            p.numerics.mean_slope_x = -SLAB["slope"]
            p.solver.nbitmax = 3000
            state = make_state(nx=6, ny=6, dx=1000.0, thk=SLAB["H"], usurf=0.0)
            run_process(iceflow, state, params=p, steps=0, output_dir=folder)
            out["zeta"] = np.asarray(state.zeta, dtype="float64").tolist()
            out[f"{method}_{case}"] = np.asarray(state.U)[:, 2, 3].tolist()
        zeta = np.asarray(out["zeta"])
        for method, first_order in (("solved", True), ("sia", False)):
            exact = slab_exact(zeta, sliding, first_order)
            out[f"max_rel_error_{method}_{case}"] = float(np.max(
                np.abs(np.asarray(out[f"{method}_{case}"]) - exact)) / exact.max())
    return out


def steep(folder: Path) -> dict:
    """The 200 m slab on a 5 degree bed (finite, 10 km): the column of
    ``solved`` 50 thicknesses from either end (m/yr)."""
    import igm_plugins.processes.iceflow as iceflow
    from igm_core.testing import make_state, run_process

    case = cases.steep_slab(dx=100.0, nx=100)
    p = iceflow.Params(method="solved")
    p.solver.nbitmax = 3000
    p.physics.init_arrhenius = cases.SLAB["arrhenius"]
    p.physics.sliding = False
    state = make_state(nx=100, ny=3, dx=100.0, topg=case["topg"], thk=case["thk"])
    run_process(iceflow, state, params=p, steps=0, output_dir=folder)
    zeta = np.asarray(state.zeta, dtype="float64")
    slope = math.tan(math.radians(cases.SLAB["slope_deg"]))
    return {"zeta": zeta.tolist(), "column": np.asarray(state.U)[:, 1, 50].tolist(),
            **{f"exact_{kind}": cases.slab_velocity(1.0, cases.SLAB["thk"], slope,
                                                    cases.SLAB["arrhenius"],
                                                    first_order=kind == "bp")
               for kind in ("bp", "sia")}}


def plot_slab(res: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    zeta = np.asarray(res["zeta"])
    fine = np.linspace(0, 1, 200)
    for i, case in enumerate(("noslip", "sliding")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(slab_exact(fine, case == "sliding"), fine, "k-", lw=2, label="exact, first order")
        ax.plot(slab_exact(fine, case == "sliding", False), fine, "k:", label="exact, shallow ice")
        ax.plot(res[f"sia_{case}"], zeta, "s", mfc="none", label="sia")
        ax.plot(res[f"solved_{case}"], zeta, "o", ms=4, label="solved (Blatter-Pattyn)")
        ax.set(xlabel="U (m/yr)", ylabel="relative height above the bed",
               title="no slip" if case == "noslip" else "Weertman sliding")
        ax.legend(fontsize=8)
    fig.suptitle("Inclined slab, H = 500 m, slope 0.05, A = 78 MPa$^{-3}$ yr$^{-1}$")
    fig.savefig(path, dpi=110)


# -- ISMIP-HOM A ----------------------------------------------------------------------


def _profile(L_km: int) -> dict[str, np.ndarray]:
    with (ISMIP / f"expA_L{L_km:03d}_profile_y0.25.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def ismip_hom_a(lengths: list[int], n: int, nz: int, folder: Path) -> dict:
    """Surface v_x (m/yr) along y = L/4 from ``solved`` for each L (km), and
    its RMS difference from the full-Stokes mean (fraction of its peak)."""
    import igm_plugins.processes.iceflow as iceflow
    from igm_core.testing import make_state, run_process

    out = {}
    for L_km in lengths:
        L = 1000.0 * L_km
        dx = L / n
        xx, yy = np.meshgrid(dx * np.arange(n), dx * np.arange(n))
        bumps = np.sin(2 * np.pi * xx / L) * np.sin(2 * np.pi * yy / L)
        p = iceflow.Params(method="solved")
        p.solver.nbitmax = 3000
        p.physics.init_arrhenius = A_TEST
        p.physics.sliding = False
        p.numerics.periodic = True
        p.numerics.Nz = nz
        p.numerics.mean_slope_x = -math.tan(math.radians(0.5))
        state = make_state(nx=n, ny=n, dx=dx, thk=1000.0 - 500.0 * bumps, usurf=0.0)
        run_process(iceflow, state, params=p, steps=0, output_dir=folder)
        u = np.asarray(state.uvelsurf, dtype="float64")[n // 4]
        u = np.append(u, u[0])
        ref = _profile(L_km)
        ui = np.interp(ref["x_hat"], np.arange(n + 1) / n, u)
        out[L_km] = {"x_hat": (np.arange(n + 1) / n).tolist(), "vx": u.tolist(),
                     "e_rms": float(np.sqrt(np.mean((ui - ref["fs_vx_mean"]) ** 2))
                                    / ref["fs_vx_mean"].max())}
    return out


def plot_ismip(res: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(res), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (L_km, r) in enumerate(res.items()):
        ref = _profile(L_km)
        ax = fig.add_subplot(1, len(res), i + 1)
        lo = np.minimum(ref["fs_vx_min"], ref["bp_vx_min"])
        hi = np.maximum(ref["fs_vx_max"], ref["bp_vx_max"])
        ax.fill_between(ref["x_hat"], lo, hi, color="0.85", label="ISMIP-HOM models")
        ax.plot(ref["x_hat"], ref["fs_vx_mean"], "k-", label="full-Stokes mean")
        ax.plot(r["x_hat"], r["vx"], "o-", ms=3, color="C3",
                label=f"solved (e_rms {100 * r['e_rms']:.1f}%)")
        ax.set(title=f"L = {L_km} km", xlabel="x / L")
        if i == 0:
            ax.set_ylabel("surface v_x at y = L/4 (m/yr)")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


# -- ISMIP-HOM E ----------------------------------------------------------------------


def ismip_hom_e(dx: float, nz: int, folder: Path) -> dict:
    """Surface v_x (m/yr) along the Arolla flowline from ``solved`` for E000
    and E001 on a ``dx`` m grid, with its RMS difference from the
    full-Stokes mean (fraction of that mean's peak)."""
    import igm_plugins.processes.iceflow as iceflow
    from igm_core.testing import make_state, run_process

    out = {}
    case = cases.arolla(dx)
    x_hat = case["x"] / cases.E_LENGTH
    for exp in ("000", "001"):
        p = iceflow.Params(method="solved")
        p.solver.nbitmax = 3000
        p.numerics.Nz = nz
        p.physics.init_arrhenius = cases.E_ARRHENIUS
        p.physics.sliding = exp == "001"
        fields = {"topg": case["topg"], "thk": case["thk"]}
        if exp == "001":
            fields.update(slidingco=1.0 - case["free_slip"], noslip=1.0 - case["free_slip"])
        state = make_state(nx=x_hat.size, ny=3, dx=dx, **fields)
        run_process(iceflow, state, params=p, steps=0, output_dir=folder)
        u = np.asarray(state.uvelsurf, dtype="float64")[1]
        ref = cases.ismip_e_envelope(exp, x_hat)
        out[exp] = {"x_hat": x_hat.tolist(), "vx": u.tolist(),
                    "e_rms": float(np.sqrt(np.mean((u - ref["fs_mean"]) ** 2))
                                   / ref["fs_mean"].max())}
    return out


def plot_ismip_e(res: dict, igm: dict | None, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (exp, r) in enumerate(res.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        x_hat = np.linspace(0.0, 1.0, 201)
        ref = cases.ismip_e_envelope(exp, x_hat)
        ax.fill_between(x_hat, ref["bp_min"], ref["bp_max"], color="0.85",
                        label="first-order participants")
        ax.fill_between(x_hat, ref["fs_min"], ref["fs_max"], color="0.6", alpha=0.6,
                        label="full-Stokes participants")
        ax.plot(x_hat, ref["fs_mean"], "k-", lw=1, label="full-Stokes mean")
        ax.plot(r["x_hat"], r["vx"], "o-", ms=2.5, color="C3",
                label=f"solved (RMS {100 * r['e_rms']:.1f}% of peak)")
        if igm and f"E{exp}" in igm:
            x = np.asarray(igm[f"E{exp}"]["x"]) / cases.E_LENGTH
            ax.plot(x, igm[f"E{exp}"]["uvelsurf"], "--", color="C0",
                    label=f"IGM {igm['igm']} (L-BFGS, {igm['nbit']} it.)")
        ax.set(title="E000, no slip" if exp == "000" else "E001, free-slip zone",
               xlabel="x / L (L = 5 km)")
        if i == 0:
            ax.set_ylabel("surface v_x (m/yr)")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "verification")
    parser.add_argument("--quick", action="store_true", help="coarser grids")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    numbers: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        numbers["slab"] = slab(folder)
        plot_slab(numbers["slab"], args.out / "slab.png")
        numbers["halfar"] = halfar([61, 121], 1000.0, folder)
        plot_halfar(numbers["halfar"], args.out / "halfar.png")
        lengths = [10, 40, 160]
        n, nz = (24, 6) if args.quick else (40, 10)
        numbers["ismip_hom_a"] = ismip_hom_a(lengths, n, nz, folder)
        numbers["ismip_hom_a_grid"] = {"n": n, "nz": nz}
        plot_ismip(numbers["ismip_hom_a"], args.out / "ismip_hom_a.png")
        numbers["steep_slab"] = steep(folder)
        e_dx = 100.0 if args.quick else 50.0
        numbers["ismip_hom_e"] = ismip_hom_e(e_dx, 10, folder)
        numbers["ismip_hom_e_grid"] = {"dx": e_dx, "nz": 10}
        igm_file = args.out / "igm_flow_cases.json"
        igm = json.loads(igm_file.read_text()) if igm_file.exists() else None
        plot_ismip_e(numbers["ismip_hom_e"], igm, args.out / "ismip_hom_e.png")
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")
    for n, r in numbers["halfar"].items():
        if n != "t_end":
            print(f"halfar dx={r['dx_km']:g} km: dome {r['dome_error_m']:+.1f} m of "
                  f"{r['dome_exact_m']:.0f}, mean |dH| {r['mean_abs_error_m']:.2f} m, max "
                  f"{r['max_abs_error_m']:.0f} m, volume change {r['volume_rel_change']:.1e}")
    for L_km, r in numbers["ismip_hom_a"].items():
        print(f"ISMIP-HOM A L={L_km} km: e_rms {100 * r['e_rms']:.2f}%, peak {max(r['vx']):.1f}")
    for exp, r in numbers["ismip_hom_e"].items():
        print(f"ISMIP-HOM E{exp}: RMS {100 * r['e_rms']:.2f}% of the full-Stokes peak, "
              f"peak {max(r['vx']):.1f}")
    steep_res = numbers["steep_slab"]
    print(f"steep slab: surface {steep_res['column'][-1]:.2f} m/yr, first order "
          f"{steep_res['exact_bp']:.2f}, shallow ice {steep_res['exact_sia']:.2f}")


if __name__ == "__main__":
    main()

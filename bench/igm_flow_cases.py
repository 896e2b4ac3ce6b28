"""IGM 3.2.1's converged ice-flow solve on the verification cases of
``verification_cases.py``: the no-slip slab on a 5 degree bed and ISMIP-HOM
experiment E (E000, E001). Run with IGM's Python (bench/.venv-igm, made by
``compare_igm.py``):

    bench/.venv-igm/bin/python bench/igm_flow_cases.py \
        --out docs/img/verification/igm_flow_cases.json

(about 7 minutes on two cores; docs/scripts/verification_plots.py then draws
IGM's E profiles beside ours).

IGM's ``unified`` method with the identity mapping and L-BFGS (its
converged solver), ``nbit_init`` iterations from zero velocity, default
numerics otherwise (vertical Lagrange basis, ``vert_spacing`` 4) and ``Nz``
levels. No slip is IGM's ``frozen_bed`` condition; E001's free-slip zone is
a zero Weertman ``tau_ref`` there and a stiff one elsewhere (10 MPa at
``u_ref`` 100 m yr-1: under 1e-3 m yr-1 of sliding at E's basal stresses),
since IGM has no cell-wise no-slip mask. With ``--hef INPUT.nc`` (our
shipped ``igm_plugins/data/hintereisferner/input.nc``) the cases ``hef``
(default Weertman sliding, 0.0464 MPa yr^1/3 m^-1/3) and ``hef_noslip``
solve the Hintereisferner at 100 m (every second node; over half an hour
each on two cores). Writes, per case,
the surface v_x along the middle row (m yr-1; for ``hef*`` the whole
surface speed field), the velocity column at the slab's middle, and the
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verification_cases import E_ARRHENIUS, SLAB, arolla, steep_slab


def solve(case: dict, arrhenius: float, nz: int, nbit: int, frozen_bed: bool,
          tau_ref: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """IGM's converged solve on ``case``; returns U and V (nz, ny, nx) in
    m yr-1 and the wall time of the solve (s)."""
    import tensorflow as tf
    from hydra import compose, initialize_config_module
    from igm.common import State
    from igm.inputs.complete_data import complete_data
    from igm.processes.iceflow import iceflow
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("get_cwd"):
        OmegaConf.register_new_resolver("get_cwd", lambda _: os.getcwd())
    key = "processes.iceflow."
    overrides = ["+processes=[iceflow]", f"{key}physics.viscosity.arrhenius={arrhenius}",
                 f"{key}numerics.Nz={nz}", f"{key}unified.mapping=identity",
                 f"{key}unified.optimizer=lbfgs", f"{key}unified.nbit_init={nbit}",
                 f"{key}unified.bcs={'[frozen_bed]' if frozen_bed else '[]'}"]
    with initialize_config_module(config_module="igm.conf", version_base=None):
        cfg = compose("config", overrides=overrides)
    state = State()
    dx = float(case["x"][1] - case["x"][0])
    ny = case["thk"].shape[0]
    state.x = tf.constant(case["x"], tf.float32)
    state.y = tf.constant(dx * np.arange(ny), tf.float32)
    for name in ("thk", "topg"):
        setattr(state, name, tf.Variable(case[name].astype("float32")))
    state.usurf = tf.Variable((case["topg"] + case["thk"]).astype("float32"))
    if tau_ref is not None:
        state.tau_ref = tf.constant(tau_ref.astype("float32"))
    state.it, state.t = 0, tf.Variable(0.0)
    complete_data(state)
    start = time.perf_counter()
    iceflow.initialize(cfg, state)  # the unified method solves once here
    return np.asarray(state.U), np.asarray(state.V), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nz", type=int, default=10)
    parser.add_argument("--nbit", type=int, default=3000)
    parser.add_argument("--cases", nargs="*", default=["slab", "E000", "E001"])
    parser.add_argument("--e-dx", type=float, default=50.0, help="E grid spacing (m)")
    parser.add_argument("--hef", type=Path, help="the Hintereisferner input.nc (hef cases)")
    args = parser.parse_args()
    from importlib.metadata import version

    results = {"igm": version("igm-model"), "nz": args.nz, "nbit": args.nbit}
    for name in args.cases:
        if name == "slab":
            case = steep_slab(dx=100.0, nx=100)
            U, V, seconds = solve(case, SLAB["arrhenius"], args.nz, args.nbit, frozen_bed=True)
            results[name] = {"column": U[:, 1, 50].tolist()}
        elif name.startswith("hef"):
            import netCDF4

            with netCDF4.Dataset(args.hef) as ds:
                case = {k: np.asarray(ds[k][:], "float64")[::2, ::2] for k in ("thk", "topg")}
            case["x"] = 100.0 * np.arange(case["thk"].shape[1])
            U, V, seconds = solve(case, SLAB["arrhenius"], args.nz, args.nbit,
                               frozen_bed=name == "hef_noslip")
            speed = np.hypot(U[-1], V[-1])
            results[name] = {"velsurf_mag": speed.tolist(), "seconds": seconds}
            print(f"{name}: max surface speed {speed.max():.2f} m/yr, {seconds:.0f} s", flush=True)
            continue
        else:
            case = arolla(args.e_dx)
            tau_ref = None
            if name == "E001":
                tau_ref = np.where(case["free_slip"] > 0, 0.0, 10.0)
            U, V, seconds = solve(case, E_ARRHENIUS, args.nz, args.nbit,
                               frozen_bed=name == "E000", tau_ref=tau_ref)
            results[name] = {"x": case["x"].tolist()}
        results[name].update({"uvelsurf": U[-1, 1].tolist(), "seconds": seconds})
        print(f"{name}: max surface speed {U[-1, 1].max():.2f} m/yr, {seconds:.0f} s", flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The shipped Hintereisferner experiment end to end through the installed
``igm_run``: a short run with every plugin (default suite) and the full
century with the default ice flow (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from conftest import run_igm

from igm_plugins.outputs.local import DEFAULT_VARS

ENV = {"MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
SHORT = ["+experiment=hintereisferner", "processes.iceflow.method=sia",
         "inputs.local.coarsening.ratio=4", "processes.time.end=1902", "processes.time.save=1",
         "processes.particles.frequency_seeding=1", "core.progress=off",
         "core.print_params=false"]


def check_outputs(run, times, with_particles=True):
    """Files of a completed run: netCDF with the right variables, units and
    times, a time series that matches the run summary, maps and particles."""
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["status"] == "completed"
    with xr.open_dataset(run / "output.nc", decode_coords="all") as ds:  # crs: grid mapping
        np.testing.assert_allclose(ds["time"].dt.year, times)  # CF time, decoded
        assert ds["thk"].dims == ("time", "y", "x")
        assert ds["thk"].attrs["units"] == "m"
        assert ds["velsurf_mag"].attrs["units"] == "m yr-1"
        assert "inputs.local (igm-core" in ds.attrs["plugins"]
        assert np.all(ds["thk"].values >= 0)
        np.testing.assert_allclose(ds["usurf"], ds["topg"] + ds["thk"], atol=1e-3)
        names = set(ds.data_vars)
    with xr.open_dataset(run / "output_ts.nc") as ts:
        np.testing.assert_allclose(ts["vol"], summary["series"]["volume_km3"], rtol=1e-9)
        assert ts["vol"].attrs["units"] == "km3"
        volumes = ts["vol"].values
    if with_particles:
        last = run / "particles" / f"particles_{times[-1]:g}.nc"
        with xr.open_dataset(last) as p:
            assert p.sizes["particle"] > 0
            assert p["x"].attrs["units"] == "m"
            assert float(p["rh"].min()) >= 0.0 and float(p["rh"].max()) <= 1.0
        frames = sorted(f.name for f in (run / "plot2d").glob("*.png"))
        assert len(frames) == len(times)
        assert (run / "plot2d" / "velbar_mag.gif").stat().st_size > 0
    return names, volumes


def test_short_run_with_every_plugin(tmp_path):
    run = tmp_path / "run"
    proc = run_igm([*SHORT, f"hydra.run.dir={run}"], cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names, volumes = check_outputs(run, [1900.0, 1901.0, 1902.0])
    assert names == set(DEFAULT_VARS)  # wvelsurf comes from vert_flow
    assert volumes[0] == pytest.approx(0.578, rel=0.02)  # the shipped glacier
    assert abs(volumes[-1] - volumes[0]) < 0.05 * volumes[0]  # no blow-up in 2 years


def test_default_processes_skip_wvelsurf_with_one_warning(tmp_path):
    run = tmp_path / "run"
    args = ["inputs.local.filename=pkg://igm_plugins.data/hintereisferner/input.nc",
            "inputs.local.coarsening.ratio=4", "processes.iceflow.method=sia",
            "processes.time.start=2000", "processes.time.end=2001", "core.progress=off",
            "core.print_params=false", f"hydra.run.dir={run}"]
    proc = run_igm(args, cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "igm.log").read_text() if (run / "igm.log").exists() else proc.stderr
    warning = "outputs.local: not saving wvelsurf (no selected plugin provides them)"
    assert log.count(warning) == 1
    names, _ = check_outputs(run, [2000.0, 2001.0], with_particles=False)
    assert names == set(DEFAULT_VARS) - {"wvelsurf"}


@pytest.mark.slow
def test_the_full_century(tmp_path):
    run = tmp_path / "run"
    proc = run_igm(["+experiment=hintereisferner", "core.progress=log",
                    f"hydra.run.dir={run}"], cwd=tmp_path, env=ENV, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    times = [1900.0 + 10 * k for k in range(11)]
    _, volumes = check_outputs(run, times)
    # the ELA rises from 2900 to 3150 m: the glacier loses ice, but not all
    assert 0.2 * volumes[0] < volumes[-1] < volumes[0]


def test_the_default_emulator_stays_close_to_a_converged_solve(tmp_path):
    """The default ice flow, the network corrected by solves
    (``emulator.solve_change`` 0.05), through ``igm_run``: Hintereisferner
    1900-1920 at 100 m. The summary counts its solves (the initial one, then
    one whenever the ice thickness has changed by 5 % since the last), all
    converged to ``emulator.solve_gtol``; the surface speed written in 1920
    is within 10 % (relative L2 over the ice) of a converged solve on the
    1920 geometry (7.2 %; the network alone, retrained online, 22.5 %)."""
    import igm_plugins.processes.iceflow as iceflow
    from igm_core.testing import make_state, run_process

    run = tmp_path / "run"
    proc = run_igm(["+experiment=hintereisferner", "processes=[smb_simple,iceflow,time,thk]",
                    "outputs=[local]", "inputs.local.coarsening.ratio=2",
                    "processes.time.end=1920", "processes.time.save=10",
                    "core.progress=off", "core.print_params=false", f"hydra.run.dir={run}"],
                   cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "run_summary.json").read_text())
    solves = summary["reports"]["process 'iceflow'"]
    print(f"{solves['solves']} solves")
    assert 6 <= solves["solves"] <= 10 and solves["unconverged"] == 0
    assert solves["gtol"] == iceflow.Params().emulator.solve_gtol
    with xr.open_dataset(run / "output.nc") as ds:
        last = ds.isel(time=-1)
        thk, topg = last["thk"].values, last["topg"].values
        speed, x = last["velsurf_mag"].values, ds["x"].values
    p = iceflow.Params(method="solved")
    p.solver.gtol, p.solver.nbitmax = 1e-3, 3000
    state = make_state(nx=thk.shape[1], ny=thk.shape[0], dx=float(x[1] - x[0]), thk=thk,
                       topg=topg)
    run_process(iceflow, state, params=p, steps=0, output_dir=tmp_path / "solve")
    ice = thk > 0.1
    converged = np.asarray(state.velsurf_mag)[ice]
    error = np.linalg.norm(speed[ice] - converged) / np.linalg.norm(converged)
    print(f"1920 surface speed off a converged solve by {error:.4f}")
    assert error < 0.10

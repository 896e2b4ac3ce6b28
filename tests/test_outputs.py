"""outputs.local and plot2d: files that xarray opens with the right
variables and units, time series, particles, atomic writes (a process killed
mid-write), PNG frames and the animation."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr
from conftest import assert_choice_refused

from igm_core.context import PluginInfo
from igm_core.errors import ConfigError
from igm_core.state import Field
from igm_core.testing import load_plugin, make_state, run_context
from igm_plugins.outputs import local, plot2d

NX, NY = 12, 9


def glacier_state():
    xx, yy = np.meshgrid(np.arange(NX), np.arange(NY))
    thk = np.clip(100.0 - 3.0 * ((xx - 6) ** 2 + (yy - 4) ** 2), 0.0, None)
    vel = 0.5 * thk
    u3 = np.stack([0.2 * vel, 0.6 * vel, vel])
    state = make_state(nx=NX, ny=NY, dx=50.0, t=1900.0, topg=2500.0 + 10.0 * xx, thk=thk,
                       smb=1.0 - 0.2 * xx, velbar_mag=vel, velsurf_mag=1.2 * vel,
                       uvelsurf=1.2 * vel, vvelsurf=0.0 * vel, U=u3)
    state.zeta = np.array([0.0, 0.5, 1.0], dtype="float32")
    return state


def drive(module, params, state, tmp_path, times=(1900.0, 1905.0, 1910.0), plugins=()):
    """Initialize the output, save at each time (thk thinned by 1 m each
    time), finalize; returns the run context."""
    registry, plugin = load_plugin(module, "outputs", params)
    ctx = run_context(tmp_path, plugins=plugins)
    (memory,) = registry.call(plugin, "igm_output_initialize", state=state, run=ctx)
    for t in times:
        state.t = t
        state.saveresult = True
        registry.call(plugin, "igm_output_update", state=state, run=ctx, memory=memory)
        state.saveresult = False
        registry.call(plugin, "igm_output_update", state=state, run=ctx,  # not a save time
                      memory=memory)
        state.thk = np.maximum(np.asarray(state.thk) - 1.0, 0.0).astype("float32")
    registry.call(plugin, "igm_output_finalize", state=state, run=ctx, memory=memory)
    return ctx


def test_output_nc_has_the_fields_units_and_provenance(tmp_path):
    state = glacier_state()
    topg = state.topg.numpy().copy()
    info = PluginInfo("processes", "thk", "igm-core", "0.1.0", "igm_plugins.processes.thk")
    params = local.Params(vars_to_save=["topg", "thk", "smb", "velbar_mag", "U"])
    drive(local, params, state, tmp_path, plugins=(info,))
    with xr.open_dataset(tmp_path / "output.nc") as ds:
        assert set(ds.data_vars) == {"topg", "thk", "smb", "velbar_mag", "U"}
        assert ds["thk"].dims == ("time", "y", "x")
        assert ds["U"].dims == ("time", "z", "y", "x")
        np.testing.assert_array_equal(ds["time"].dt.year, [1900, 1905, 1910])  # CF time, decoded
        np.testing.assert_array_equal(ds["x"], 50.0 * np.arange(NX))
        np.testing.assert_array_equal(ds["z"], [0.0, 0.5, 1.0])
        assert ds["thk"].attrs["units"] == "m"
        assert ds["thk"].attrs["standard_name"] == "land_ice_thickness"
        assert ds["smb"].attrs["units"] == "m yr-1"
        assert ds["velbar_mag"].attrs["long_name"] == "magnitude of the depth-averaged ice velocity"
        assert ds["x"].attrs["units"] == "m"
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert "processes.thk (igm-core 0.1.0)" in ds.attrs["plugins"]
        np.testing.assert_array_equal(ds["topg"][2], topg)
        thk = ds["thk"].values
        np.testing.assert_array_equal(thk[0] - thk[1], np.where(thk[0] >= 1.0, 1.0, thk[0]))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_time_series_volume_and_area(tmp_path):
    state = glacier_state()
    volumes, areas = [], []
    for _ in range(3):
        volumes.append(np.sum(np.asarray(state.thk), dtype="float64") * 50.0**2 / 1e9)
        areas.append(np.count_nonzero(np.asarray(state.thk) > 0) * 50.0**2 / 1e6)
        state.thk = np.maximum(np.asarray(state.thk) - 1.0, 0.0).astype("float32")
    drive(local, local.Params(), glacier_state(), tmp_path)
    with xr.open_dataset(tmp_path / "output_ts.nc") as ds:
        np.testing.assert_allclose(ds["vol"], volumes, rtol=1e-12)
        assert ds["vol"].attrs["units"] == "km3"
        assert ds["area"].attrs["units"] == "km2"
        np.testing.assert_allclose(ds["area"], areas, rtol=1e-12)


def test_default_names_without_a_provider_are_skipped_with_one_warning(tmp_path, caplog):
    state = glacier_state()
    with caplog.at_level(logging.WARNING, logger="igm"):
        drive(local, local.Params(), state, tmp_path)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["outputs.local: not saving wvelsurf (no selected plugin provides them)"]
    with xr.open_dataset(tmp_path / "output.nc") as ds:
        assert set(ds.data_vars) == set(local.DEFAULT_VARS) - {"wvelsurf"}


@pytest.mark.parametrize("name", ["thickness", "wvelsurf_typo", "W"])
def test_an_unknown_name_lists_the_available_fields(tmp_path, name):
    with pytest.raises(ConfigError) as info:
        drive(local, local.Params(vars_to_save=["thk", name]), glacier_state(), tmp_path)
    assert str(info.value).startswith(f"outputs.local.vars_to_save: no field '{name}' in this "
                                      "run; available: U, smb, thk, topg, usurf,")


def test_a_face_field_is_refused_with_its_shape(tmp_path):
    state = glacier_state()
    ny, nx = state.grid.shape
    state.ubar_xface = np.zeros((ny, nx + 1), "float32")
    with pytest.raises(ConfigError, match=rf"outputs\.local\.vars_to_save: field 'ubar_xface' has "
                       rf"shape \({ny}, {nx + 1}\), not on the cell centres \({ny}, {nx}\)"):
        drive(local, local.Params(vars_to_save=["thk", "ubar_xface"]), state, tmp_path)
    assert not (tmp_path / "output.nc").exists()


def test_particles_are_written_per_save_time(tmp_path):
    state = glacier_state()
    state.declare(Field("particles.x", "m", "particle x coordinate", dims=("particle",)))
    state.particles = {"id": np.array([3, 4]), "x": np.array([10.0, 20.0])}
    drive(local, local.Params(vars_to_save=["thk"]), state, tmp_path)
    files = sorted(p.name for p in (tmp_path / "particles").iterdir())
    assert files == ["particles_1900.nc", "particles_1905.nc", "particles_1910.nc"]
    with xr.open_dataset(tmp_path / "particles" / "particles_1905.nc") as ds:
        np.testing.assert_array_equal(ds["x"], [10.0, 20.0])
        assert ds["x"].attrs["units"] == "m"
        assert ds["id"].dtype == np.int32  # CF-1.8 has no 64-bit integers


KILL_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from igm_core.testing import load_plugin, make_state, run_context
from igm_plugins.outputs import local

out = Path(sys.argv[1])
state = make_state(nx=300, ny=200, t=0.0, topg=0.0, thk=0.0)
registry, plugin = load_plugin(local, "outputs", local.Params(vars_to_save=["thk", "topg"]))
ctx = run_context(out)
(memory,) = registry.call(plugin, "igm_output_initialize", state=state, run=ctx)
state.saveresult = True
for k in range(100000):  # save k holds thk = topg = k everywhere, until killed
    state.t = float(k)
    state.thk = np.full((200, 300), k, "float32")
    state.topg = np.full((200, 300), k, "float32")
    registry.call(plugin, "igm_output_update", state=state, run=ctx, memory=memory)
"""


@pytest.mark.parametrize("delay", [0.3, 1.1, 2.3])
def test_a_run_killed_at_any_moment_leaves_every_completed_save(tmp_path, delay):
    """SIGKILL while saves are appended: output.nc opens and each of its
    records is a whole save (thk = topg = its year), none torn."""
    script = tmp_path / "kill_me.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "output.nc").exists():
            assert proc.poll() is None, "the writer exited before its first save"
            assert time.monotonic() < deadline, "the writer never saved"
            time.sleep(0.05)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with xr.open_dataset(out / "output.nc") as ds:
        years = ds["time"].dt.year.values
        assert len(years) >= 1
        np.testing.assert_array_equal(years, np.arange(len(years)))
        for k in range(len(years)):
            for name in ("thk", "topg"):
                values = ds[name][k].values
                assert (values == k).all(), (name, k, np.unique(values)[:5])


def test_appending_a_save_writes_about_its_size(tmp_path):
    """Bytes written for 40 saves stay within twice the final file size
    (the whole file was copied at every save before: quadratic)."""
    def written_bytes() -> int:  # bytes this process handed to write() (Linux)
        with open("/proc/self/io") as fh:
            return int(next(ln for ln in fh if ln.startswith("wchar:")).split()[1])

    state = make_state(nx=120, ny=100, t=0.0, topg=1.0, thk=2.0)
    before = written_bytes()
    drive(local, local.Params(vars_to_save=["thk", "topg", "usurf"]), state, tmp_path,
          times=[float(t) for t in range(40)])
    written = written_bytes() - before
    size = (tmp_path / "output.nc").stat().st_size
    assert size > 40 * 3 * 120 * 100 * 4
    assert written < 2 * size, (written, size)


def test_plot2d_frames_and_animation(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    state = glacier_state()
    state.particles = {"x": np.array([100.0, 200.0]), "y": np.array([100.0, 150.0])}
    with caplog.at_level(logging.WARNING, logger="igm"):
        drive(plot2d, plot2d.Params(live=True, var_max=60.0), state, tmp_path)
    frames = sorted(p.name for p in (tmp_path / "plot2d").iterdir())
    assert frames == ["velbar_mag.gif", "velbar_mag_1900.png", "velbar_mag_1905.png",
                      "velbar_mag_1910.png"]
    from PIL import Image

    with Image.open(tmp_path / "plot2d" / "velbar_mag.gif") as gif:
        assert gif.n_frames == 3
    with Image.open(tmp_path / "plot2d" / "velbar_mag_1900.png") as png:
        assert png.size == (800, 600)
    live = [r.message for r in caplog.records if "live" in r.message]
    assert len(live) == 1 and "no display" in live[0]


def test_plot2d_scale_is_fitted_and_outlines_drawn(tmp_path):
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    state = glacier_state()
    speed = np.where(np.asarray(state.thk) > 0, np.linspace(0.5, 80.0, NX)[None, :], 0.0)
    state.velbar_mag = speed.astype("float32")
    for var, norm, top in (("velbar_mag", LogNorm, np.percentile(speed[speed > 0], 99)),
                           ("thk", Normalize, None)):
        plotter = plot2d.Plotter(folder=tmp_path,
                                 outline0=(np.asarray(state.thk) > 0).astype("uint8"))
        fig = Figure()
        plot2d.draw(fig, plot2d.Params(var=var), state, plotter)
        ax = fig.axes[0]
        image = ax.images[-1]
        assert type(image.norm) is norm, var
        if top is not None:
            assert image.norm.vmax == pytest.approx(top, rel=1e-6)
            assert image.norm.vmin == pytest.approx(max(top / 1000.0, 0.1))
        assert len(ax.collections) >= 2  # the outline now and at the start
        assert "year 1900" in ax.get_title() and "(m" in ax.get_title()
        assert plotter.limits == (image.norm.vmin, image.norm.vmax)


def test_plot2d_unknown_field_lists_the_fields(tmp_path):
    with pytest.raises(ConfigError) as info:
        drive(plot2d, plot2d.Params(var="speed"), glacier_state(), tmp_path)
    assert ("outputs.plot2d.var: no 2-D field 'speed' in this run; available: smb, thk, topg,"
            in str(info.value))


def test_plot2d_bad_animation_is_refused_when_built():
    assert_choice_refused(plot2d.Params, "animation", "avi", "[gif, mp4, none]")


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, mask, mode):
    script = (
        "import os, sys\n"
        f"os.umask({mask})\n"
        "from pathlib import Path\n"
        "from igm_core.files import atomic_path, write_json\n"
        "out = Path(sys.argv[1])\n"
        "write_json(out / 'run_summary.json', {'status': 'completed'})\n"
        "with atomic_path(out / 'output.nc') as tmp:\n"
        "    tmp.write_bytes(b'data')\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    for name in ("run_summary.json", "output.nc"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name

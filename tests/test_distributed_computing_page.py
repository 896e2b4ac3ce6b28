"""The "Distributed Computing" page of IGM's documentation, as users copy it.

The page's experiment file is kept verbatim in
``tests/data/distributed_computing/params.yaml``. Each test puts it, with one
line changed (``core.url_data``: the page's Dropbox link becomes a
``file://`` copy of the shipped Hintereisferner data), as
``experiment/params.yaml`` in a fresh launch folder and runs one of the
page's commands there; the data arrive through ``core.url_data`` in
``./data``:

1. ``igm_run +experiment=params processes.time.start=1990,1950 --multirun``
2. the same with ``hydra/launcher=joblib``
3. ``igm_run +experiment=params processes.time.start=1990,1950
   processes.time.end=2000,2050 hydra/launcher=joblib --multirun``
4. ``igm_run +experiment=experiment_1,experiment_2 hydra/launcher=joblib
   --multirun``, experiment_1 and experiment_2 being the page's experiment
   pinned to GPU 0 and GPU 1 (``core.hardware.visible_gpus``).

Each command runs twice: in the default suite with one override added,
``inputs.local.coarsening.ratio=4`` (a 200 m grid instead of the page's
50 m; every other value is the page's), and under the ``slow`` mark exactly
as the page writes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import netCDF4
import numpy as np
import pytest
import yaml
from conftest import ROOT, run_igm
from test_multirun import jobs, summary_rows, sweep_dir

from igm_plugins._netcdf import years as netcdf_years

PAGE = ROOT / "tests" / "data" / "distributed_computing" / "params.yaml"
PAGE_URL = ("https://www.dropbox.com/scl/fo/kd7dix5j1tm75nj941pvi/h?"
            "rlkey=q7jtmf9yn3a970cqygdwne25j&dl=0")
SHIPPED = ROOT / "plugins" / "data" / "hintereisferner" / "input.nc"
COARSE = "inputs.local.coarsening.ratio=4"
SAVE = 10.0  # the page's processes.time.save (yr)
FALLBACK = ("CUDA_VISIBLE_DEVICES={} but TensorFlow finds no GPU on this machine: "
            "running on the CPU")
PINNED = """\
# @package _global_
defaults:
  - params
core:
  hardware:
    visible_gpus: [{gpu}]
"""


class Grid(NamedTuple):
    """The overrides added to each page command and the coarsening ratio
    they give (the shipped data are on a 50 m grid)."""

    overrides: tuple[str, ...]
    ratio: int

    @property
    def dx(self) -> float:
        return 50.0 * self.ratio


@pytest.fixture(params=[pytest.param(Grid((COARSE,), 4), id="200m"),
                        pytest.param(Grid((), 1), id="page", marks=pytest.mark.slow)])
def grid(request) -> Grid:
    """200 m in the default suite; the page's 50 m, no override, when slow."""
    return request.param


def command(*args: str, grid: Grid) -> list[str]:
    """A page command (its arguments before ``--multirun``) with the grid's
    overrides added."""
    return [*args, *grid.overrides, "--multirun"]


def job_overrides(*args: str, grid: Grid) -> str:
    """A job's overrides as summary.csv lists them."""
    return " ".join([*args, *grid.overrides])


@pytest.fixture(scope="module")
def data_url(tmp_path_factory) -> str:
    """``file://`` URL of a copy of the shipped Hintereisferner input, made
    once for the module (each command fetches it into its own ./data)."""
    copy = tmp_path_factory.mktemp("page_data") / "input.nc"
    shutil.copyfile(SHIPPED, copy)
    return copy.as_uri()


@pytest.fixture
def launch_dir(tmp_path: Path, data_url: str) -> Path:
    """A fresh launch folder holding experiment/params.yaml: the page's file,
    its url_data line pointed at ``data_url``."""
    line = f"  url_data: {PAGE_URL}\n"
    text = PAGE.read_text()
    assert text.count(line) == 1
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "params.yaml").write_text(
        text.replace(line, f"  url_data: {data_url}\n"))
    return tmp_path


def run_page_command(cwd: Path, args: list[str], env: dict[str, str] | None = None,
                     timeout: float = 3600) -> tuple[str, Path, dict[int, dict]]:
    """Run ``igm_run ARGS`` in ``cwd``, check it succeeded and fetched the
    page's data into ./data; return its output (stdout and stderr), sweep
    folder and jobs."""
    proc = run_igm(args, cwd, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    url = yaml.safe_load((cwd / "experiment" / "params.yaml").read_text())["core"]["url_data"]
    assert url.startswith("file://")
    assert (cwd / "data" / ".igm_url_data").read_text().splitlines()[0] == url
    assert (cwd / "data" / "input.nc").read_bytes() == SHIPPED.read_bytes()
    sweep = sweep_dir(cwd)
    return proc.stdout + proc.stderr, sweep, jobs(sweep)


def check_job(folder: Path, run: dict, start: float, end: float, grid: Grid) -> None:
    """A completed job of the page's experiment from ``start`` to ``end``
    (yr) on ``grid``: its resolved configuration and summary, output.nc and
    output_ts.nc at the page's save times (every 10 years from the start),
    particle files, plot2d frames and animation."""
    cfg = yaml.safe_load((folder / "config_resolved.yaml").read_text())
    assert cfg["core"]["url_data"].startswith("file://")
    assert cfg["inputs"]["local"]["coarsening"]["ratio"] == grid.ratio
    clock = cfg["processes"]["time"]
    assert (clock["start"], clock["end"], clock["save"]) == (start, end, SAVE)
    years = np.arange(start, end + SAVE / 2, SAVE)
    assert run["status"] == "completed", run.get("error")
    assert (run["t_start"], run["t_end"]) == (start, end)
    assert run["series"]["t"] == years.tolist()
    with netCDF4.Dataset(folder / "output.nc") as ds:
        np.testing.assert_array_equal(netcdf_years(ds), years)
        np.testing.assert_allclose(np.diff(ds["x"][:]), grid.dx)
        shape = (len(years), ds.dimensions["y"].size, ds.dimensions["x"].size)
        for name in ("thk", "usurf", "velbar_mag"):
            assert ds[name].shape == shape, name
        assert ds["thk"][-1].max() > 100.0  # the glacier is there, over 100 m thick
        assert ds["velbar_mag"][-1].max() > 0.0  # and it flows
    with netCDF4.Dataset(folder / "output_ts.nc") as ts:
        np.testing.assert_array_equal(netcdf_years(ts), years)
        assert (ts["vol"][:] > 0).all() and (ts["area"][:] > 0).all()
    names = [f"{year:.0f}" for year in years]
    particles = folder / "particles"
    assert sorted(p.name for p in particles.iterdir()) == [f"particles_{y}.nc" for y in names]
    with netCDF4.Dataset(particles / f"particles_{names[0]}.nc") as ds:
        assert set(ds.variables) >= {"id", "t_seed", "x", "y", "z", "rh", "englt"}
        assert ds["t_seed"].size > 0 and (ds["t_seed"][:] == start).all()  # seeded at the start
    with netCDF4.Dataset(particles / f"particles_{names[-1]}.nc") as ds:
        t_seed = ds["t_seed"][:]
        assert t_seed.size > 0 and start <= t_seed.min() and t_seed.max() <= end
    frames = folder / "plot2d"
    assert sorted(p.name for p in frames.glob("*.png")) == [f"velbar_mag_{y}.png" for y in names]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in frames.glob("*.png"))
    assert (frames / "velbar_mag.gif").read_bytes()[:6] == b"GIF89a"
    assert (folder / "igm.log").is_file()


def check_rows(sweep: Path, overrides: dict[int, str]) -> None:
    """summary.csv: one completed row per job, with the job's overrides."""
    rows = summary_rows(sweep)
    assert {int(k): (r["status"], r["overrides"]) for k, r in rows.items()} == {
        k: ("completed", o) for k, o in overrides.items()}
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_file_is_the_pages_text():
    """The quirks of the page's text are kept (an editor that strips
    trailing blanks or re-indents would lose them)."""
    lines = PAGE.read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert lines.count("  - override /inputs: ") == 1
    assert lines.count("  - override /processes: ") == 1
    assert lines.count("  - override /outputs: ") == 1
    assert "     filename: input.nc" in lines
    assert lines[lines.index("    save: 10.0") + 1] == "    "
    assert lines[-1] == "    live: False" and len(lines) == 42


def test_command_1_basic_launcher_runs_the_jobs_one_after_the_other(launch_dir, grid):
    output, sweep, runs = run_page_command(launch_dir, command(
        "+experiment=params", "processes.time.start=1990,1950", grid=grid))
    assert "sweep summary: 2 of 2 jobs completed" in output
    assert sorted(runs) == [0, 1]
    check_job(sweep / "0", runs[0], 1990.0, 2000.0, grid)
    check_job(sweep / "1", runs[1], 1950.0, 2000.0, grid)
    # one process, one job after the other, TensorFlow's own thread count
    assert runs[0]["pid"] == runs[1]["pid"]
    assert runs[0]["ended_at"] <= runs[1]["started_at"]
    assert runs[0]["threads"] == runs[1]["threads"] == 0
    check_rows(sweep, {k: job_overrides("+experiment=params", f"processes.time.start={y}",
                                        grid=grid) for k, y in enumerate((1990, 1950))})


def test_command_2_joblib_runs_the_jobs_in_worker_processes(launch_dir, grid):
    output, sweep, runs = run_page_command(launch_dir, command(
        "+experiment=params", "processes.time.start=1990,1950", "hydra/launcher=joblib",
        grid=grid))
    assert "joblib: launching 2 jobs on" in output
    assert "_target_: hydra_plugins.igm_launchers.launchers.JoblibLauncher" in (
        sweep / "multirun.yaml").read_text()
    assert sorted(runs) == [0, 1]
    check_job(sweep / "0", runs[0], 1990.0, 2000.0, grid)
    check_job(sweep / "1", runs[1], 1950.0, 2000.0, grid)
    # n_jobs -1: as many workers as cores, each job on one core's share
    assert runs[0]["threads"] == runs[1]["threads"] == 1
    check_rows(sweep, {k: job_overrides("+experiment=params", f"processes.time.start={y}",
                                        grid=grid) for k, y in enumerate((1990, 1950))})


def test_command_3_joblib_grid_runs_every_start_end_pair(launch_dir, grid):
    output, sweep, runs = run_page_command(launch_dir, command(
        "+experiment=params", "processes.time.start=1990,1950",
        "processes.time.end=2000,2050", "hydra/launcher=joblib", grid=grid))
    assert "sweep summary: 4 of 4 jobs completed" in output
    pairs = {0: (1990.0, 2000.0), 1: (1990.0, 2050.0), 2: (1950.0, 2000.0), 3: (1950.0, 2050.0)}
    assert sorted(runs) == sorted(pairs)
    for k, (start, end) in pairs.items():
        check_job(sweep / str(k), runs[k], start, end, grid)
    check_rows(sweep, {k: job_overrides("+experiment=params", f"processes.time.start={s:.0f}",
                                        f"processes.time.end={e:.0f}", grid=grid)
                       for k, (s, e) in pairs.items()})


def test_command_4_two_experiments_pinned_to_two_gpus_run_on_the_cpu_and_say_so(launch_dir,
                                                                                  grid):
    """The launch environment lists GPUs 0 and 1, the machine has none:
    each job is given its GPU, TensorFlow finds none, and the job runs on
    the CPU with a warning in its igm.log."""
    for gpu in (0, 1):
        (launch_dir / "experiment" / f"experiment_{gpu + 1}.yaml").write_text(
            PINNED.format(gpu=gpu))
    output, sweep, runs = run_page_command(launch_dir, command(
        "+experiment=experiment_1,experiment_2", "hydra/launcher=joblib", grid=grid),
        env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert "sweep summary: 2 of 2 jobs completed" in output
    assert sorted(runs) == [0, 1]
    for k in (0, 1):
        run, folder = runs[k], sweep / str(k)
        check_job(folder, run, 1900.0, 2000.0, grid)  # the page's years
        assert run["cuda_visible_devices"] == str(k)
        on_cpu = not any(":GPU:" in d for d in run["devices"])
        assert (FALLBACK.format(k) in (folder / "igm.log").read_text()) == on_cpu
        if not Path("/proc/driver/nvidia/gpus").is_dir():  # no GPU here: the CPU it is
            assert run["devices"] == ["/physical_device:CPU:0"]
    check_rows(sweep, {k: job_overrides(f"+experiment=experiment_{k + 1}", grid=grid)
                       for k in (0, 1)})


def test_info_log_of_the_page_experiment_never_prints_t_nan(launch_dir):
    """At INFO, with iceflow's diagnostic method (which logs the model time
    of each emulator-solver comparison): iceflow comes before ``time`` in
    the page's process list, so its first comparison, at initialisation,
    happens before the clock starts; the line names the initial state
    instead of ``t=nan``. One year, and a short solve (the log is tested,
    not the solver)."""
    proc = run_igm(["+experiment=params", COARSE, "core.logging_level=INFO",
                    "processes.iceflow.method=diagnostic", "processes.iceflow.solver.nbitmax=20",
                    "processes.time.start=1999"], launch_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log_file,) = launch_dir.glob("outputs/*/*/igm.log")
    log = log_file.read_text()
    assert "t=nan" not in log
    diagnostics = [line.split(" - ", 1)[1] for line in log.splitlines()
                   if "iceflow diagnostic" in line]
    assert len(diagnostics) == 3  # at initialisation, then at steps 0 and 1
    assert diagnostics[0].startswith("iceflow diagnostic initial state: relative L2 difference")
    assert all(d.startswith("iceflow diagnostic t=1999: ") for d in diagnostics[1:])
    assert "t=2000.00 yr (step 2, 100 %): ice volume" in log

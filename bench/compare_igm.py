"""Benchmark this model against the published IGM 3.2.1, side by side.

Runs bench/experiment/hef_century.yaml (Hintereisferner, 1900-2000, saves
every 10 years) with our ``igm_run`` and, translated (bench/igm_translate.py),
with IGM 3.2.1's ``igm_run`` from its own virtual environment (created on
first use: ``python -m venv bench/.venv-igm`` + ``pip install
igm-model==3.2.1``, about 90 s and 5.5 GB). Each run goes through
bench/timed_entry.py, which stamps the start and end of the time loop.

Prints one table per run (total wall time, start-up to the end of the first
step, loop time per simulated year, steps, peak memory, final volume and
area, relative differences of final thickness and surface speed between the
models and against a converged ``solved`` run of ours), the speed ratios,
and optionally the timing of a sweep (4 jobs, ``--sweep-jobs``) with the
basic (one job at a time), joblib (2 at a time) and submitit_local (all at
once) launchers.
``--report`` writes bench/results.json, the plot
bench/time_per_year.png and the harness's section of bench/RESULTS.md.

Typical use (from the repository root, on a quiet machine):
    nice -n 10 .venv/bin/python bench/compare_igm.py --report
Smoke run of our model only (what tests/test_bench_smoke.py does):
    .venv/bin/python bench/compare_igm.py --models ours --ratios 8 \
        --years 1900 1903 --save 1 --no-reference --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from igm_translate import module_lists, set_key, to_igm321, translate_override  # noqa: E402

EXPERIMENT = BENCH / "experiment" / "hef_century.yaml"
IGM_VERSION = "3.2.1"
IGM_VENV = BENCH / ".venv-igm"
THR_ICE = 0.1  # m: cells thinner than this count as ice-free (both models' thr_ice_thk)
RESULTS_BEGIN = "<!-- compare_igm:begin (written by bench/compare_igm.py) -->"
RESULTS_END = "<!-- compare_igm:end -->"
DIFF_KEYS = ("thk_vs_igm", "speed_vs_igm", "thk_vs_solved", "speed_vs_solved",
             "speed_vs_solve")
SWEEP_KEY = "processes.particles.density_seeding"
TIMEOUT_S = 1800.0  # s: longest a single run or sweep may take (--timeout)


@dataclass
class Case:
    """One run: model ('ours' or 'igm'), coarsening ratio of the 50 m grid,
    role ('main' or 'reference': a converged solved run of ours), and extra
    dotted settings applied to the experiment."""

    model: str
    ratio: int
    role: str = "main"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model}-{self.role}-{50 * self.ratio}m"


@dataclass
class Measure:
    """What one run measured. Times in s (wall clock), memory in MiB,
    volume km3, area km2; ``output`` is the run's output.nc ('' if none)."""

    label: str
    model: str
    role: str
    dx_m: float
    cells: int = 0
    status: str = "failed"
    total_s: float = math.nan
    startup_s: float = math.nan
    init_s: float = math.nan  # launch to the start of the loop (before step 0)
    loop_s: float = math.nan
    loop_s_per_yr: float = math.nan
    steps: int = 0
    peak_mib: float = math.nan
    volume_km3: float = math.nan
    area_km2: float = math.nan
    output: str = ""
    run_dir: str = ""
    diffs: dict[str, float] = field(default_factory=dict)
    error: str = ""


# -- environments -------------------------------------------------------------


def ours_python() -> Path:
    """Python of the environment holding our installed ``igm_run``."""
    script = shutil.which("igm_run", path=str(Path(sys.executable).parent)) or shutil.which(
        "igm_run")
    if script is None:
        sys.exit("compare_igm: our igm_run is not installed (pip install -e .)")
    return Path(script).resolve().parent / "python"


def ensure_igm_venv(venv: Path, launchers: tuple[str, ...] = ()) -> Path:
    """Create IGM 3.2.1's virtual environment when missing (and add the
    Hydra launcher plugins of ``launchers``); return its Python."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "igm_run").exists():
        print(f"creating {venv} with igm-model=={IGM_VERSION} (about 90 s, 5.5 GB)", flush=True)
        subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"igm-model=={IGM_VERSION}"],
                       check=True)
    for launcher in launchers:
        module = f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher"
        if launcher in LAUNCHER_DISTRIBUTIONS and subprocess.run(
                [str(python), "-c", f"import {module}"], capture_output=True).returncode:
            subprocess.run([str(python), "-m", "pip", "install", "-q",
                            LAUNCHER_DISTRIBUTIONS[launcher]], check=True)
    return python


def installed_ours() -> dict[str, set[str]]:
    """Our installed plugin names per stage (entry points)."""
    return {stage: {ep.name for ep in metadata.entry_points(group=f"igm.{stage}")}
            for stage in ("inputs", "processes", "outputs")}


# -- experiments ----------------------------------------------------------------


def load_experiment(args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    """Our experiment with the run span applied and the plugins we lack
    (not yet installed) removed, each removal added to ``notes``."""
    exp = yaml.safe_load(EXPERIMENT.read_text())
    start, end = args.years
    for key, value in (("start", float(start)), ("end", float(end)), ("save", float(args.save))):
        set_key(exp, f"processes.time.{key}", value)
    have = installed_ours()
    lists = module_lists(exp)
    for stage, names in lists.items():
        for name in [n for n in names if n not in have[stage]]:
            names.remove(name)
            exp.get(stage, {}).pop(name, None)
            notes.append(f"{stage}.{name} is not installed in our environment: left out of "
                         "BOTH models' runs")
    exp["defaults"] = [{f"override /{stage}": names} for stage, names in lists.items()]
    return exp


def case_experiment(base: dict[str, Any], case: Case) -> dict[str, Any]:
    """The experiment of one case: the base plus its ratio and settings."""
    exp = json.loads(json.dumps(base))
    set_key(exp, "inputs.local.coarsening.ratio", case.ratio)
    for key, value in case.settings.items():
        set_key(exp, key, value)
    return exp


def write_experiment(folder: Path, name: str, exp: dict[str, Any]) -> None:
    """Write ``exp`` as ``folder/experiment/name.yaml`` (Hydra's @package _global_)."""
    (folder / "experiment").mkdir(parents=True, exist_ok=True)
    text = "# @package _global_\n" + yaml.safe_dump(exp, sort_keys=False)
    (folder / "experiment" / f"{name}.yaml").write_text(text)


def prepare(case: Case, base: dict[str, Any], work: Path, ours_py: Path
            ) -> tuple[Path, list[str], list[str]]:
    """Folder, launch folder and ``igm_run`` arguments for ``case``; returns
    (launch folder, arguments, translation notes)."""
    launch = work / case.label
    if launch.exists():
        shutil.rmtree(launch)
    exp = case_experiment(base, case)
    notes: list[str] = []
    if case.model == "igm":
        tr = to_igm321(exp, ours_masks_smb=ours_masks_smb())
        exp, notes = tr.experiment, tr.notes
        (launch / "data").mkdir(parents=True)
        for name in tr.data_files:
            copy_netcdf(resolve_data(name, ours_py), launch / "data" / Path(name).name,
                        tr.drop_variables)
    write_experiment(launch, "bench", exp)
    return launch, ["+experiment=bench", f"hydra.run.dir={launch / 'run'}"], notes


def ours_masks_smb() -> bool:
    """Whether our smb_simple, by default, keeps accumulation off cells
    outside the ice mask, as IGM 3.2.1's smb does."""
    from igm_plugins.processes import smb_simple

    return bool(getattr(smb_simple.Params(), "mask_accumulation", False))


def copy_netcdf(src: Path, dst: Path, drop: list[str]) -> None:
    """Copy a netCDF file without the variables in ``drop``."""
    import netCDF4

    with netCDF4.Dataset(src) as a, netCDF4.Dataset(dst, "w") as b:
        b.setncatts({k: a.getncattr(k) for k in a.ncattrs()})
        for name, dim in a.dimensions.items():
            b.createDimension(name, len(dim))
        for name, var in a.variables.items():
            if name in drop:
                continue
            fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
            out = b.createVariable(name, var.dtype, var.dimensions, fill_value=fill)
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            out[:] = var[:]


def resolve_data(name: str, ours_py: Path) -> Path:
    """A data file named in our experiment (``pkg://`` or a path)."""
    if not name.startswith("pkg://"):
        return Path(name)
    package, _, rel = name.removeprefix("pkg://").partition("/")
    code = f"from importlib import resources; print(resources.files({package!r}).joinpath({rel!r}))"
    return Path(subprocess.run([str(ours_py), "-c", code], check=True, capture_output=True,
                               text=True).stdout.strip())


# -- running and measuring ---------------------------------------------------------


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float, float, float]:
    """Run ``cmd`` in ``cwd`` (its own process group) with output to
    ``log``, killing the group after ``TIMEOUT_S``; return (exit status, -9
    when killed, start time since the epoch, wall time s, peak resident
    memory MiB of the largest process of the tree)."""
    with open(log, "w") as out:
        start_epoch, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        killer = threading.Timer(TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode == -signal.SIGKILL:
        with open(log, "a") as out:
            out.write(f"\ncompare_igm: killed after {TIMEOUT_S:.0f} s (--timeout)\n")
    return proc.returncode, start_epoch, wall, usage.ru_maxrss / 1024.0


def final_fields(output: Path) -> dict[str, np.ndarray]:
    """Last saved thk and velsurf_mag (ny, nx) and the grid spacing of an output.nc."""
    import netCDF4

    with netCDF4.Dataset(output) as ds:
        x = np.asarray(ds["x"][:], dtype="float64")
        fields = {"dx": np.array(abs(x[1] - x[0]))}
        for name in ("thk", "velsurf_mag"):
            if name in ds.variables:
                fields[name] = np.ma.filled(ds[name][-1], np.nan).astype("float64")
    return fields


def run_case(case: Case, base: dict[str, Any], work: Path, pythons: dict[str, Path],
             span_yr: float, profile: bool = False) -> Measure:
    """Run one case and measure it (wall, start-up, loop, memory, final
    state); with ``profile``, under py-spy (sampling, idle frames included:
    TensorFlow computes on its own threads while Python waits), writing
    ``profile.txt`` (collapsed stacks) in the case's folder."""
    launch, args, notes = prepare(case, base, work, pythons["ours"])
    for line in notes:
        print(f"  [{case.label}] translated: {line}")
    stamps = launch / "stamps.json"
    cmd = [str(pythons[case.model]), str(BENCH / "timed_entry.py"), case.model, str(stamps), *args]
    if profile:
        cmd = [str(pythons["ours"].parent / "py-spy"), "record", "--idle", "--rate", "50",
               "--format", "raw", "--output", str(launch / "profile.txt"), "--", *cmd]
    print(f"running {case.label} ...", flush=True)
    rc, t0, wall, peak = timed(cmd, launch, launch / "run.log")
    m = Measure(case.label, case.model, case.role, 50.0 * case.ratio, total_s=wall,
                peak_mib=peak, run_dir=str(launch / "run"))
    s = json.loads(stamps.read_text()) if stamps.exists() else {}
    if rc != 0 or not s.get("loop_end"):
        tail = (launch / "run.log").read_text(errors="replace").strip().splitlines()[-3:]
        m.error = f"exit {rc}: " + " | ".join(tail)
        print(f"  {case.label} FAILED ({m.error})")
        return m
    m.status = "ok"
    m.steps = int(s["steps"])
    m.startup_s = s["first_step_end"] - t0
    m.init_s = s["loop_begin"] - t0
    m.loop_s = s["loop_end"] - s["first_step_end"]
    m.loop_s_per_yr = m.loop_s / span_yr
    output = launch / "run" / "output.nc"
    if output.exists():
        m.output = str(output)
        f = final_fields(output)
        thk = f["thk"]
        m.cells = int(thk.size)
        m.volume_km3 = float(np.sum(thk) * f["dx"] ** 2 / 1e9)
        m.area_km2 = float(np.sum(thk > THR_ICE) * f["dx"] ** 2 / 1e6)
    else:
        summary = launch / "run" / "run_summary.json"
        if summary.exists():
            r = json.loads(summary.read_text())
            m.volume_km3, m.area_km2 = r.get("volume_km3", math.nan), r.get("area_km2", math.nan)
    print(f"  {case.label}: {wall:.1f} s total, {m.steps} steps, "
          f"{m.loop_s_per_yr:.3f} s per simulated yr", flush=True)
    return m


def rel_l2(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Relative L2 difference ||a - b|| / ||b|| over ``mask`` (b the reference)."""
    ref = float(np.sqrt(np.sum(b[mask] ** 2)))
    return float(np.sqrt(np.sum((a[mask] - b[mask]) ** 2)) / ref) if ref > 0 else math.nan


def compare(m: Measure, ref: str | Path | None, tag: str, thk: bool = True) -> None:
    """Store in ``m.diffs`` the relative L2 differences of final thickness
    (over cells with ice in either run; unless ``thk`` is False) and surface
    speed (ice in both) between run ``m`` and the reference output.nc
    ``ref``, keys ``thk_vs_<tag>`` and ``speed_vs_<tag>``."""
    if not (m.output and ref):
        return
    a, b = final_fields(Path(m.output)), final_fields(Path(ref))
    if a["thk"].shape != b["thk"].shape:
        return
    ice_a, ice_b = a["thk"] > THR_ICE, b["thk"] > THR_ICE
    if thk:
        m.diffs[f"thk_vs_{tag}"] = rel_l2(a["thk"], b["thk"], ice_a | ice_b)
    if "velsurf_mag" in a and "velsurf_mag" in b:
        m.diffs[f"speed_vs_{tag}"] = rel_l2(a["velsurf_mag"], b["velsurf_mag"], ice_a & ice_b)


def write_geometry(output: Path, path: Path) -> None:
    """Write the last saved geometry of ``output`` (x, y, topg, thk, usurf)
    as an input file for inputs.local."""
    import netCDF4

    with netCDF4.Dataset(output) as src, netCDF4.Dataset(path, "w") as dst:
        for dim in ("y", "x"):
            dst.createDimension(dim, len(src[dim]))
            var = dst.createVariable(dim, "f8", (dim,))
            var[:] = src[dim][:]
            var.units = "m"
        for name in ("topg", "thk", "usurf"):
            var = dst.createVariable(name, "f4", ("y", "x"))
            var[:] = src[name][-1]
            var.units = "m"


def solve_on_geometry(m: Measure, work: Path, pythons: dict[str, Path],
                      settings: dict[str, Any]) -> Path | None:
    """A converged ice-flow solve of ours (``settings``) on the final
    geometry of run ``m``; returns its output.nc (None if it failed)."""
    launch = work / f"{m.label}-solve"
    if launch.exists():
        shutil.rmtree(launch)
    launch.mkdir(parents=True)
    write_geometry(Path(m.output), launch / "geometry.nc")
    exp: dict[str, Any] = {"defaults": [{"override /inputs": ["local"]},
                                        {"override /processes": ["iceflow", "time"]},
                                        {"override /outputs": ["local"]}]}
    set_key(exp, "inputs.local.filename", str(launch / "geometry.nc"))
    for key, value in {**settings, "processes.time.start": 2000.0, "processes.time.end": 2001.0,
                       "processes.time.save": 1.0, "processes.time.cfl": 1.0,
                       "outputs.local.vars_to_save": ["thk", "velsurf_mag"]}.items():
        set_key(exp, key, value)
    write_experiment(launch, "bench", exp)
    print(f"converged solve on the final geometry of {m.label} ...", flush=True)
    rc, _, _, _ = timed([str(pythons["ours"].parent / "igm_run"), "+experiment=bench",
                         f"hydra.run.dir={launch / 'run'}"], launch, launch / "run.log")
    output = launch / "run" / "output.nc"
    return output if rc == 0 and output.exists() else None


SWEEP_LAUNCHERS = {  # launcher -> its overrides
    "basic": [],  # one job after the other, in one process
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],  # 2 at a time
    # every job at once, each its own process with one thread (submitit's
    # local executor has no limit on parallel jobs)
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                       "hydra.launcher.timeout_min=60"],
}
LAUNCHER_DISTRIBUTIONS = {"joblib": "hydra-joblib-launcher>=1.2,<1.3",
                          "submitit_local": "hydra-submitit-launcher>=1.2,<1.3"}


def sweep_values(jobs: int) -> str:
    """The swept values, one per job: particle seeding densities evenly
    spaced up to 0.8 (IGM 3.2.1 seeds every int(1/density)-th cell, so it
    refuses densities above 1)."""
    return ",".join(f"{0.8 * (i + 1) / jobs:g}" for i in range(jobs))


def run_sweep(model: str, launcher: str, base: dict[str, Any], work: Path,
              pythons: dict[str, Path], ratio: int, years: tuple[float, float],
              sweep_key: str = SWEEP_KEY, settings: dict[str, Any] | None = None,
              jobs: int = 4) -> dict[str, Any]:
    """Time a ``jobs``-job sweep over ``sweep_key`` (our name; translated for
    IGM) with one of :data:`SWEEP_LAUNCHERS` for one model; ``settings``
    apply to our runs only."""
    settings = settings or {}
    case = Case(model, ratio, role=f"sweep-{launcher}", settings={
        **(settings if model == "ours" else {}),
        "processes.time.start": float(years[0]), "processes.time.end": float(years[1])})
    launch, _, notes = prepare(case, base, work, pythons["ours"])
    key = translate_override(sweep_key) if model == "igm" else sweep_key
    args = ["--multirun", "+experiment=bench", f"hydra.sweep.dir={launch / 'sweep'}",
            f"{key}={sweep_values(jobs)}", *SWEEP_LAUNCHERS[launcher]]
    script = pythons[model].parent / "igm_run"
    print(f"sweep {model} {launcher}: {key}={sweep_values(jobs)} ...", flush=True)
    rc, _, wall, peak = timed([str(script), *args], launch, launch / "run.log")
    return {"model": model, "launcher": launcher, "jobs": jobs,
            "grid_m": 50.0 * ratio, "years": list(years), "status": "ok" if rc == 0 else "failed",
            "wall_s": wall, "peak_mib": peak, "key": key, "notes": notes}


PROFILE_FILES = ("(igm_core/", "(igm_plugins/", "(plugins/", "(tensorflow/__init__.py")


def profile_summary(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks (``frame;frame;... count`` lines, one
    per distinct stack), the share of the main thread's samples (%) spent
    inside each function (inclusive), the ``top`` largest among our own
    functions and TensorFlow's import; frames are ``function (file)``."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("<module> (timed_entry.py"):
            continue  # not the main thread
        total += int(count)
        frames = {f.rsplit(":", 1)[0] + ")" for f in stack.split(";")}
        for frame in (f for f in frames if any(k in f for k in PROFILE_FILES)):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return [(frame, 100.0 * n / total) for frame, n in ranked] if total else []


# -- report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def table(measures: list[Measure]) -> str:
    """Markdown table of the runs."""
    head = ("| run | grid | total s | start-up s | loop s/yr | steps | peak MiB | volume km3 "
            "| area km2 | thk vs IGM | speed vs IGM | thk vs solved run | speed vs solved run "
            "| speed vs solve on same geometry |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in measures:
        d = m.diffs
        rows.append(
            f"| {m.model}-{m.role} | {m.dx_m:.0f} m ({m.cells} cells) | {fmt(m.total_s, 1)} "
            f"| {fmt(m.startup_s, 1)} | {fmt(m.loop_s_per_yr, 3)} | {m.steps} "
            f"| {fmt(m.peak_mib, 0)} | {fmt(m.volume_km3, 4)} | {fmt(m.area_km2, 3)} "
            + "".join(f"| {fmt(d.get(k, math.nan), 3)} " for k in DIFF_KEYS) + "|")
    return "\n".join(rows)


def ratios(measures: list[Measure]) -> list[str]:
    """Lines giving IGM's time over ours (total and loop) per grid size."""
    lines = []
    for dx in sorted({m.dx_m for m in measures}):
        ours = [m for m in measures if m.model == "ours" and m.role == "main" and m.dx_m == dx]
        igm = [m for m in measures if m.model == "igm" and m.dx_m == dx]
        if ours and igm and ours[0].status == igm[0].status == "ok":
            o, i = ours[0], igm[0]
            lines.append(f"- {dx:.0f} m: total wall time IGM/ours = {i.total_s / o.total_s:.2f}x "
                         f"(target >= 3x), loop per simulated year IGM/ours = "
                         f"{i.loop_s_per_yr / o.loop_s_per_yr:.2f}x (target >= 2x)")
    return lines


def sweep_table(sweeps: list[dict[str, Any]]) -> str:
    rows = ["| model | launcher | jobs | grid | span | status | wall s | jobs per minute "
            "| peak MiB (largest process) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s in sweeps:
        rows.append(f"| {s['model']} | {s['launcher']} | {s['jobs']} | {s['grid_m']:.0f} m "
                    f"| {s['years'][0]:.0f}-{s['years'][1]:.0f} | {s['status']} "
                    f"| {s['wall_s']:.1f} "
                    f"| {fmt(60.0 * s['jobs'] / s['wall_s'] if s['status'] == 'ok' else math.nan)} "
                    f"| {s['peak_mib']:.0f} |")
    return "\n".join(rows)


def version_of(python: Path, dist: str) -> str:
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return r.stdout.strip() or "not installed"


def machine(pythons: dict[str, Path]) -> dict[str, str]:
    """Machine, software versions and date of the benchmark."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH,
                            capture_output=True, text=True).stdout.strip()
    info = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": f"{cpu}, {len(os.sched_getaffinity(0))} cores usable",
            "memory": f"{int(mem) / 2**20:.0f} GiB", "gpu": "none lent to this task (CPU only)",
            "os": platform.platform(), "load_average_at_start": " ".join(
                f"{v:.2f}" for v in os.getloadavg()),
            "ours": f"igm-core {version_of(pythons['ours'], 'igm-core')} (git {commit}), "
                    f"tensorflow {version_of(pythons['ours'], 'tensorflow')}, "
                    f"numpy {version_of(pythons['ours'], 'numpy')}"}
    weights = Path(__file__).resolve().parents[1] / "plugins/processes/iceflow/emulator_weights.npz"
    if weights.exists():
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        stamp = dt.datetime.fromtimestamp(weights.stat().st_mtime, dt.timezone.utc)
        info["ours_emulator_weights"] = f"sha256 {digest}, written {stamp:%Y-%m-%d %H:%M} UTC"
    if "igm" in pythons:
        info["igm"] = (f"igm-model {version_of(pythons['igm'], 'igm-model')}, "
                       f"tensorflow {version_of(pythons['igm'], 'tensorflow')}, "
                       f"numpy {version_of(pythons['igm'], 'numpy')}")
    return info


def plot(measures: list[Measure], path: Path) -> None:
    """Time per simulated year against grid size, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, style in (("ours", "o-"), ("igm", "s--")):
        pts = sorted((m.cells, m.loop_s_per_yr, m.dx_m) for m in measures
                     if m.model == model and m.role == "main" and m.status == "ok" and m.cells)
        if pts:
            cells, per_yr, _ = zip(*pts, strict=True)
            ax.plot(cells, per_yr, style, label="this model" if model == "ours"
                    else f"IGM {IGM_VERSION} (default)")
            for x, y, d in pts:
                ax.annotate(f"{d:.0f} m", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("grid cells (Hintereisferner)")
    ax.set_ylabel("loop wall time per simulated year (s)")
    ax.set_title("Time per simulated year, CPU (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_text(info: dict[str, str], notes: list[str], measures: list[Measure],
                sweeps: list[dict[str, Any]]) -> str:
    """The harness's section of RESULTS.md."""
    parts = [RESULTS_BEGIN, "## Side by side with IGM 3.2.1", "",
             "Written by `bench/compare_igm.py --report`. Machine and versions:", ""]
    parts += [f"- {k}: {v}" for k, v in info.items()]
    parts += ["", "Translations and adjustments made for this run:", ""]
    parts += [f"- {n}" for n in notes] or ["- none"]
    parts += ["", table(measures), ""]
    parts += [f"- {m.label} did not finish: {m.error}" for m in measures if m.status != "ok"]
    parts += ["", "Speed ratios (IGM time / our time):", ""]
    parts += ratios(measures) or ["- not available (a model did not run)"]
    if sweeps:
        parts += ["", f"Sweeps over {SWEEP_KEY} (translated for IGM), one job at a time with "
                      "basic, 2 with joblib, all at once with submitit_local:", "",
                  sweep_table(sweeps)]
    parts += ["", "![time per simulated year](time_per_year.png)", "", RESULTS_END]
    return "\n".join(parts)


def write_report(text: str, path: Path) -> None:
    """Replace the harness's section of ``path`` (between the markers),
    leaving every other section as it is."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if RESULTS_BEGIN in old and RESULTS_END in old:
        head, _, rest = old.partition(RESULTS_BEGIN)
        _, _, tail = rest.partition(RESULTS_END)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="ours,igm", help="comma-separated: ours, igm")
    p.add_argument("--ratios", type=int, nargs="+", default=[1, 2],
                   help="coarsening ratios of the 50 m grid (1 = 50 m, 2 = 100 m)")
    p.add_argument("--years", type=float, nargs=2, default=[1900.0, 2000.0])
    p.add_argument("--save", type=float, default=10.0, help="years between saves")
    p.add_argument("--method", default="", help="our processes.iceflow.method (default: ours)")
    p.add_argument("--ours", nargs="*", default=[],
                   help="more settings of our main runs (key=value ...)")
    p.add_argument("--reference", nargs="*", default=[
        "processes.iceflow.method=solved", "processes.iceflow.solver.nbitmax=600"],
                   help="settings of the converged solved run of ours (key=value ...)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the solved reference runs and solves")
    p.add_argument("--reference-ratios", type=int, nargs="*", default=[],
                   help="ratios with a solved reference century (default: none; about "
                        "15 s per simulated year at 100 m on 2 CPU cores)")
    p.add_argument("--solve-ratios", type=int, nargs="*", default=[1, 2],
                   help="ratios where each run's final geometry gets a converged solve")
    p.add_argument("--sweep", action="store_true", help="time the sweeps")
    p.add_argument("--sweep-ratio", type=int, default=2)
    p.add_argument("--sweep-years", type=float, nargs=2, default=[1900.0, 1910.0])
    p.add_argument("--sweep-launchers", nargs="+", default=["basic", "joblib"],
                   choices=sorted(SWEEP_LAUNCHERS))
    p.add_argument("--sweep-jobs", type=int, default=4, help="jobs per sweep")
    p.add_argument("--sweep-key", default=SWEEP_KEY, help="our key swept (one value per job)")
    p.add_argument("--profile", action="store_true",
                   help="run our main cases under py-spy and print where the time goes")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S,
                   help="kill a run or sweep after this many seconds")
    p.add_argument("--workdir", type=Path, default=BENCH / ".runs")
    p.add_argument("--igm-venv", type=Path, default=IGM_VENV)
    p.add_argument("--json", type=Path, default=None, help="write the measures here")
    p.add_argument("--report", action="store_true",
                   help="write bench/results.json, bench/time_per_year.png, bench/RESULTS.md")
    return p.parse_args(argv)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict, values parsed as YAML scalars."""
    return {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in items)}


def save(record: dict[str, Any], measures: list[Measure], args: argparse.Namespace) -> None:
    """Write the record to --json, and with --report to bench/results.json,
    bench/time_per_year.png and the harness's section of bench/RESULTS.md."""
    record["machine"]["load_average_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    if args.report:
        (BENCH / "results.json").write_text(json.dumps(record, indent=2))
        plot(measures, BENCH / "time_per_year.png")
        write_report(report_text(record["machine"], record["notes"], measures,
                                 record["sweeps"]), BENCH / "RESULTS.md")


def main(argv: list[str] | None = None) -> int:
    global TIMEOUT_S
    args = parse_args(argv)
    TIMEOUT_S = args.timeout
    if args.profile and args.report:
        sys.exit("compare_igm: --profile slows the profiled runs down: run it without --report")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pythons = {"ours": ours_python()}
    if "igm" in models:
        pythons["igm"] = ensure_igm_venv(args.igm_venv,
                                         tuple(args.sweep_launchers) if args.sweep else ())
    notes: list[str] = []
    base = load_experiment(args, notes)
    ours_settings = {"processes.iceflow.method": args.method} if args.method else {}
    ours_settings.update(parse_settings(args.ours))
    reference = parse_settings(args.reference)
    for line in notes:
        print(f"note: {line}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    span = args.years[1] - args.years[0]
    info = machine(pythons)

    translation_notes = (to_igm321(base, ours_masks_smb=ours_masks_smb()).notes
                         if "igm" in models else [])
    measures: list[Measure] = []
    record: dict[str, Any] = {"machine": info, "notes": notes + translation_notes,
                              "runs": [], "sweeps": [], "profiles": {}}
    for ratio in args.ratios:
        row = [run_case(Case(model, ratio, settings=ours_settings if model == "ours" else {}),
                        base, args.workdir, pythons, span,
                        profile=args.profile and model == "ours") for model in models]
        ref = None
        if not args.no_reference and "ours" in models and ratio in args.reference_ratios:
            ref = run_case(Case("ours", ratio, "solved", reference),
                           base, args.workdir, pythons, span)
        igm = next((m for m in row if m.model == "igm"), None)
        for m in row:
            if igm is not None and m is not igm:
                compare(m, igm.output, "igm")
            if ref is not None:
                compare(m, ref.output, "solved")
            if not args.no_reference and m.output and ratio in args.solve_ratios:
                compare(m, solve_on_geometry(m, args.workdir, pythons, reference),
                        "solve", thk=False)
        measures += row + ([ref] if ref is not None else [])
        record["runs"] = [asdict(m) for m in measures]
        save(record, measures, args)  # what ran survives a later run that is cut short

    for m in measures:
        prof = Path(m.run_dir).parent / "profile.txt"
        if prof.exists():
            record["profiles"][m.label] = profile_summary(prof)
            print(f"\nwhere the time goes in {m.label} (% of main-thread samples, inclusive):")
            for frame, share in record["profiles"][m.label]:
                print(f"  {share:5.1f}%  {frame}")
    save(record, measures, args)

    if args.sweep:
        for model in models:
            for launcher in args.sweep_launchers:
                record["sweeps"].append(run_sweep(
                    model, launcher, base, args.workdir, pythons, args.sweep_ratio,
                    tuple(args.sweep_years), args.sweep_key, ours_settings, args.sweep_jobs))
        save(record, measures, args)
    print()
    print(table(measures))
    for line in ratios(measures):
        print(line)
    if record["sweeps"]:
        print()
        print(sweep_table(record["sweeps"]))
    return 0 if all(m.status == "ok" for m in measures) else 1


if __name__ == "__main__":
    sys.exit(main())

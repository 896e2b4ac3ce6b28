"""Sweeps on a real SLURM cluster through ``hydra/launcher=slurm_cpu`` (the
shipped preset on top of Hydra's submitit_slurm launcher): a 2x2 grid, a job
that raises, a job cancelled mid-run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import igm_run_exe, run_igm
from slurm_cluster import sacct_states, slurm_cluster  # noqa: F401 (fixture)
from test_multirun import TINY, jobs, summary_rows, sweep_dir

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SLURM = ["hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", "--multirun"]


def test_grid_2x2_through_sbatch_completes(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4",
                    "processes.time.save=1,0.5", *SLURM], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert sorted(runs) == [0, 1, 2, 3]
    combos = {(r["t_end"], r["series"]["t"][1]) for r in runs.values()}
    assert combos == {(3.0, 1.0), (3.0, 0.5), (4.0, 1.0), (4.0, 0.5)}
    for num, run in runs.items():
        assert run["status"] == "completed"
        assert run["threads"] == 1  # cpus_per_task
        assert (sweep / str(num) / "config_resolved.yaml").is_file()
        assert (sweep / str(num) / "igm.log").is_file()
    ids = [r["slurm_job"] for r in runs.values()]
    assert len({i.split("_")[0] for i in ids}) == 1  # one job array
    states = sacct_states(ids)
    final = {i: (states.get(i) or "MISSING").split()[0] for i in ids}
    assert final == dict.fromkeys(ids, "COMPLETED")
    assert {row["status"] for row in summary_rows(sweep).values()} == {"completed"}


def test_job_that_raises_is_reported_and_others_kept(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,-1", *SLURM], cwd)
    assert proc.returncode == 1
    runs = jobs(sweep_dir(cwd))
    assert runs[0]["status"] == "completed" and runs[1]["status"] == "failed"
    assert "1 of 2 jobs failed:" in proc.stderr
    assert ("job 1 (+experiment=params processes.time.end=-1): processes.time.end (-1.0) "
            "must be after processes.time.start (0.0)") in proc.stderr
    assert "igm_run: error: processes.time.end (-1.0) must be after" in proc.stderr


def _wait_running(sweep_root: Path, num: int, timeout: float = 120.0) -> dict:
    """run_summary.json of job ``num`` once it runs (written at job start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sweep_root.glob(f"multirun/*/*/{num}/run_summary.json"):
            record = json.loads(path.read_text())
            if record.get("slurm_job"):
                return record
        time.sleep(0.5)
    raise AssertionError(f"job {num} did not start within {timeout} s")


def test_job_cancelled_mid_run_is_reported_interrupted_and_never_hangs(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = subprocess.Popen([igm_run_exe(), "+experiment=params",
                             "processes.time.end=3,100000000", *SLURM], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = _wait_running(cwd, 1)
        assert running["status"] == "running"
        subprocess.run(["scancel", running["slurm_job"]], check=True, timeout=30)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    sweep = sweep_dir(cwd)
    rows = summary_rows(sweep)
    assert rows["0"]["status"] == "completed"
    # scancel sends SIGTERM: the run stops and says so (with a checkpoint when it
    # had started its time loop), and the sweep can be resumed
    assert rows["1"]["status"] == "interrupted"
    assert rows["1"]["error"].startswith("interrupted by SIGTERM")
    assert "1 of 2 jobs interrupted (igm_run --resume" in stderr
    assert "job 1 (+experiment=params processes.time.end=100000000): interrupted by SIGTERM" \
        in stderr
    assert "igm_run: error:" in stderr
    assert sacct_states([running["slurm_job"]])[running["slurm_job"]].startswith("CANCELLED")

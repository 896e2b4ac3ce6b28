"""Sweeps on a real SLURM cluster through ``hydra/launcher=slurm_cpu`` (the
shipped preset on top of Hydra's submitit_slurm launcher): a 2x2 grid, a job
that raises, a job cancelled mid-run, jobs that can never start, and jobs
requeued (``scontrol requeue``, time limits) that continue from their
checkpoints to the same files as the run in one piece."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import HEF, assert_same_outputs, igm_run_exe, run_igm
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


@pytest.mark.parametrize(("settings", "reason"), [
    (["hydra.launcher.cpus_per_task=4"],  # the preset's default, on a 2-CPU node
     "SLURM will never start it: PartitionConfig (the partition's nodes cannot hold the "
     "request: cpus_per_task=4, mem_gb=1"),
    (["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=100000"],
     "SLURM refused the job: Memory specification can not be satisfied (cpus_per_task=1, "
     "mem_gb=100000"),
    (["hydra.launcher.cpus_per_task=1", "hydra.launcher.partition=nowhere"],
     "SLURM refused the job: invalid partition specified: nowhere (partition=nowhere"),
])
def test_a_job_that_cannot_start_is_one_line_with_slurms_reason(experiment_dir, settings,
                                                                 reason):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "hydra/launcher=slurm_cpu", "hydra.launcher.mem_gb=1",
                    *settings, "--multirun"], cwd, timeout=240)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("igm_run: error:")]
    assert len(errors) == 1 and f"job 0 (+experiment=params): {reason}" in errors[0], errors
    assert "Traceback" not in proc.stderr
    (row,) = summary_rows(sweep_dir(cwd)).values()
    assert row["status"] == "failed" and row["error"].startswith(reason)
    if "PartitionConfig" in reason:  # cancelled, not left pending
        assert "its largest node has 2 CPUs" in errors[0]
        assert "job 0 (+experiment=params), SLURM job " in proc.stdout + proc.stderr
        assert ": PENDING (PartitionConfig)" in proc.stdout + proc.stderr


ONE_JOB = ["hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.mem_gb=2"]


def _job_folder(cwd: Path) -> Path:
    found = list(cwd.glob("multirun/*/*/0"))
    return found[0] if found else cwd / "missing"


def _release_when_requeued(job_id: str) -> bool:
    """A requeued job waits about 2 minutes (SLURM's BeginTime after a
    requeue): start it now, as an idle cluster would soon. True if it was
    pending."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True,
                         text=True, timeout=30).stdout
    if out.split() == ["PENDING", "BeginTime"]:
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"],
                       capture_output=True, timeout=30)
        return True
    return False


def _wait_and_release(proc: subprocess.Popen, cwd: Path, timeout: float) -> int:
    """Wait for igm_run, releasing its job each time it is requeued; returns
    how many times it was."""
    released, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the requeued job did not finish"
        summary = _job_folder(cwd) / "run_summary.json"
        if summary.is_file():
            job_id = json.loads(summary.read_text()).get("slurm_job")
            released += bool(job_id) and _release_when_requeued(job_id)
        time.sleep(1.0)
    return released


def test_scontrol_requeue_mid_run_continues_from_the_checkpoint(hef_reference, tmp_path):
    proc = subprocess.Popen([igm_run_exe(), *HEF, *ONE_JOB, "hydra.launcher.timeout_min=10",
                             "--multirun"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((_job_folder(tmp_path) / "checkpoints").glob("*.npz")):
            assert time.monotonic() < deadline and proc.poll() is None, "no first checkpoint"
            time.sleep(0.5)
        job_id = json.loads((_job_folder(tmp_path) / "run_summary.json").read_text())[
            "slurm_job"]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        assert _wait_and_release(proc, tmp_path, 400) >= 1
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    folder = _job_folder(tmp_path)
    record = json.loads((folder / "run_summary.json").read_text())
    assert record["status"] == "completed" and record["attempts"] == 2
    assert record["restarted_from"]
    assert f"SLURM job {job_id}: RUNNING" in output  # states shown while igm_run waits
    assert_same_outputs(hef_reference, folder)


@pytest.mark.slow  # about 6.5 minutes: three or more one-minute SLURM attempts and restarts
def test_a_run_three_times_its_time_limit_finishes_through_requeues(tmp_path):
    """timeout_min=1: each attempt runs until SLURM's warning (SIGUSR2,
    signal_delay_s before the limit; or SIGTERM at the limit if the warning
    comes too late), checkpoints and stops; the job is requeued (submitit) or
    submitted again (the launcher) and continues, until the run is done.
    SLURM may send the warning up to its scheduling period (30 s) early: 15 s
    keeps it after Python's start even for a one-minute job."""
    longer = [*HEF, "processes.time.end=2200", "processes.time.save=10",
              "core.checkpoint.every_years=0"]
    reference = tmp_path / "reference"
    alone = subprocess.Popen([igm_run_exe(), *longer, f"hydra.run.dir={reference}"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    proc = subprocess.Popen([igm_run_exe(), *longer, *ONE_JOB, "hydra.launcher.timeout_min=1",
                             "hydra.launcher.signal_delay_s=15", "--multirun"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_and_release(proc, tmp_path, 1200)
        output = proc.stdout.read()
        assert alone.wait(timeout=600) == 0, alone.stderr.read()[-2000:]
    finally:
        for p in (proc, alone):
            if p.poll() is None:
                p.kill()
    assert proc.returncode == 0, output[-3000:]
    folder = _job_folder(tmp_path)
    record = json.loads((folder / "run_summary.json").read_text())
    assert record["status"] == "completed" and record["t_end"] == 2200.0
    assert record["attempts"] >= 3 and record["restarted_from"]
    assert_same_outputs(reference, folder, saves=31)

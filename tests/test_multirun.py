"""Multirun through igm_run: sequential (basic launcher), parallel (joblib,
submitit_local), grid searches, failure isolation, GPU pinning and the sweep
summary written when a multirun ends.

Each job is the ``time`` process on a tiny input (a few years, seconds per
job). Parallelism is shown by overlapping job start/end times recorded in
each job's run_summary.json, never by timing thresholds.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import pytest
from conftest import run_igm

from igm_core.config import HardwareParams
from igm_core.errors import ConfigError
from igm_core.hardware import gpu_list, thread_share

TINY = """
# @package _global_
defaults:
  - override /processes: [time]
  - override /outputs: []
core:
  print_params: false
  print_comp: false
processes:
  time:
    start: 0
    end: 3
    save: 1
"""


def sweep_dir(cwd: Path) -> Path:
    """The single sweep folder ``multirun/DATE/TIME`` under ``cwd``."""
    found = sorted(cwd.glob("multirun/*/*"))
    assert len(found) == 1, found
    return found[0]


def jobs(sweep: Path) -> dict[int, dict]:
    """run_summary.json of every job folder, by job number."""
    return {int(p.parent.name): json.loads(p.read_text())
            for p in sweep.glob("*/run_summary.json")}


def summary_rows(sweep: Path) -> dict[str, dict[str, str]]:
    """summary.csv rows by job number (as text)."""
    with open(sweep / "summary.csv", newline="") as fh:
        return {row["job"]: row for row in csv.DictReader(fh)}


def overlap(a: dict, b: dict) -> bool:
    """Whether two jobs' [started_at, ended_at] intervals overlap."""
    return a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]


def test_sequential_multirun_isolates_a_failed_job(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,-1,4", "--multirun"], cwd)
    assert proc.returncode == 1
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert sorted(runs) == [0, 1, 2]  # the job after the failed one ran too
    assert [runs[i]["status"] for i in range(3)] == ["completed", "failed", "completed"]
    assert runs[0]["t_end"] == 3.0 and runs[2]["t_end"] == 4.0
    assert runs[0]["series"]["t"] == [0.0, 1.0, 2.0, 3.0]
    assert "processes.time.end (-1.0) must be after" in runs[1]["error"]
    # one process, one job after the other
    assert runs[0]["pid"] == runs[2]["pid"]
    assert runs[0]["ended_at"] <= runs[1]["started_at"] <= runs[1]["ended_at"] \
        <= runs[2]["started_at"]
    # the end-of-sweep report names the failed job and its error
    assert "2 of 3 jobs completed" in proc.stderr
    assert "1 of 3 jobs failed:" in proc.stderr
    assert "job 1 (+experiment=params processes.time.end=-1)" in proc.stderr
    rows = summary_rows(sweep)
    assert [rows[k]["status"] for k in "012"] == ["completed", "failed", "completed"]
    assert float(rows["0"]["volume_km3"]) == pytest.approx(runs[0]["volume_km3"])
    assert float(rows["2"]["area_km2"]) == pytest.approx(runs[2]["area_km2"])
    assert rows["2"]["overrides"] == "+experiment=params processes.time.end=4"
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_joblib_grid_runs_every_combination_in_parallel(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4",
                    "processes.time.save=1,0.5", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", "--multirun"], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = jobs(sweep_dir(cwd))
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs.values())
    combos = {(r["t_end"], r["series"]["t"][1]) for r in runs.values()}
    assert combos == set(itertools.product([3.0, 4.0], [1.0, 0.5]))
    # two worker processes whose jobs ran at the same time
    assert any(overlap(a, b) and a["pid"] != b["pid"]
               for a, b in itertools.combinations(runs.values(), 2))
    # each job limited TensorFlow to its share of the cores
    cores = len(os.sched_getaffinity(0))
    assert {r["threads"] for r in runs.values()} == {max(1, cores // 2)}


def test_experiment_files_pin_their_gpu_and_pinning_holds_in_one_process(experiment_dir):
    """experiment_1 pins GPU 0, experiment_2 GPU 1 (of the two the launch
    environment lists). The basic launcher runs both in one process:
    TensorFlow, started by the first job, cannot change devices, so the
    second job runs in a fresh process with its own pinning."""
    for k in (1, 2):
        cwd = experiment_dir(f"experiment_{k}", TINY.replace(
            "core:\n", f"core:\n  hardware:\n    visible_gpus: [{k - 1}]\n"))
    proc = run_igm(["+experiment=experiment_1,experiment_2", "--multirun"], cwd,
                   env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = jobs(sweep_dir(cwd))
    assert runs[0]["cuda_visible_devices"] == "0" and not runs[0]["fresh_process"]
    assert runs[1]["cuda_visible_devices"] == "1" and runs[1]["fresh_process"]
    assert runs[0]["pid"] != runs[1]["pid"]
    assert all(r["devices"] for r in runs.values())


def test_auto_gpus_round_robin_in_reused_joblib_workers(experiment_dir):
    """Four jobs on two joblib workers, visible_gpus=auto over two GPUs: job
    k gets GPU k mod 2, and no process ever hosts jobs of two different GPUs
    (a reused worker runs a conflicting job in a fresh process)."""
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4,5,6",
                    "core.hardware.visible_gpus=auto", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", "--multirun"], cwd,
                   env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = jobs(sweep_dir(cwd))
    assert {k: r["cuda_visible_devices"] for k, r in runs.items()} == {
        0: "0", 1: "1", 2: "0", 3: "1"}
    by_pid: dict[int, set[str]] = {}
    for r in runs.values():
        by_pid.setdefault(r["pid"], set()).add(r["cuda_visible_devices"])
    assert all(len(gpus) == 1 for gpus in by_pid.values()), by_pid


def test_submitit_local_runs_the_sweep(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4",
                    "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                    "--multirun"], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: (r["status"], r["t_end"]) for k, r in runs.items()} == {
        0: ("completed", 3.0), 1: ("completed", 4.0)}
    assert {r["threads"] for r in runs.values()} == {1}
    assert runs[0]["pid"] != runs[1]["pid"]
    assert set(summary_rows(sweep)) == {"0", "1"}


# -- placement rules (no TensorFlow) ---------------------------------------------


def test_auto_assigns_gpus_round_robin_by_job_number():
    hw = HardwareParams(visible_gpus="auto")
    assert [gpu_list(hw, k, ["0", "1", "2"]) for k in range(5)] == [
        ["0"], ["1"], ["2"], ["0"], ["1"]]
    # indices refer to the GPUs the process may use (e.g. those SLURM gave it)
    assert gpu_list(HardwareParams(visible_gpus=[1]), 0, ["4", "7"]) == ["7"]
    assert gpu_list(HardwareParams(visible_gpus=[]), 0, ["0"]) == []
    assert gpu_list(HardwareParams(visible_gpus=None), 3, ["0"]) is None


def test_no_gpu_falls_back_to_cpu_with_a_log_line(caplog):
    caplog.set_level("INFO", logger="igm")
    assert gpu_list(HardwareParams(visible_gpus=[0]), 0, []) == []
    assert "no GPU on this machine, running on the CPU" in caplog.text
    assert gpu_list(HardwareParams(visible_gpus="auto"), 1, []) == []
    assert "no GPU found, running on the CPU" in caplog.text


def test_missing_gpu_index_is_a_config_error():
    with pytest.raises(ConfigError, match="GPU index 2 asked for, but this process sees 2"):
        gpu_list(HardwareParams(visible_gpus=[2]), 0, ["0", "1"])
    with pytest.raises(ConfigError, match=r"core\.hardware\.visible_gpus must be a list"):
        gpu_list(HardwareParams(visible_gpus="first"), 0, ["0"])


def test_thread_share_per_launcher():
    cores = len(os.sched_getaffinity(0))
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert thread_share(HardwareParams(threads=3), {"_target_": joblib}) == 3
    assert thread_share(HardwareParams(), {"_target_": joblib, "n_jobs": 2}) == max(1, cores // 2)
    assert thread_share(HardwareParams(), {"_target_": joblib, "n_jobs": -1}) == 1
    assert thread_share(HardwareParams(), {"_target_": "x.SlurmLauncher", "cpus_per_task": 4}) == 4
    assert thread_share(HardwareParams(), {"_target_": "x.BasicLauncher"}) == 0

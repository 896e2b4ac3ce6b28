"""Sweeps that survive their jobs' failures: a joblib worker killed by a
signal fails only its job, failed jobs are retried (``core.retries``), and
``igm_run --resume`` runs again only what a sweep left undone: failed,
interrupted (from their checkpoints) and never-started jobs."""

from __future__ import annotations

import json
import signal

from conftest import run_igm, write_fake_dist
from test_multirun import TINY, jobs, summary_rows, sweep_dir

from igm_core import checkpoint

# A process that misbehaves once per job folder at its third step (t = 2 yr):
# ``fail_once`` raises, ``kill_once`` kills its own process with SIGKILL (what
# the kernel's OOM killer does), ``term_once`` sends itself SIGTERM; ``kill``
# kills every time; ``ok`` does nothing. A marker file in the job folder says
# it already misbehaved there.
FLAKY = """
import os
import signal
from dataclasses import dataclass
from igm_core import hookimpl

@dataclass
class Params:
    mode: str = "ok"

@hookimpl
def igm_process_initialize(run):
    return {"marker": str(run.output_dir / ".flaky_done")}

@hookimpl
def igm_process_update(params, state, memory):
    if state.it != 2 or params.mode == "ok":
        return
    if params.mode.endswith("_once") and os.path.exists(memory["marker"]):
        return
    open(memory["marker"], "w").close()
    if params.mode == "fail_once":
        raise RuntimeError("a transient failure")
    os.kill(os.getpid(), signal.SIGTERM if params.mode == "term_once" else signal.SIGKILL)
"""


def flaky_env(tmp_path) -> dict[str, str]:
    site = write_fake_dist(tmp_path / "site", "igm-flaky", "1.0",
                           {"igm.processes": {"flaky": "igm_flaky.flaky"}},
                           {"igm_flaky.flaky": FLAKY})
    return {"PYTHONPATH": str(site)}


def test_a_joblib_worker_killed_by_a_signal_fails_only_its_job(experiment_dir, tmp_path):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes=[time,flaky]",
                    "processes.flaky.mode=ok,kill,ok,ok,ok", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=2", "--multirun"], cwd, env=flaky_env(tmp_path))
    assert proc.returncode == 1
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: r["status"] for k, r in runs.items()} == {
        0: "completed", 1: "failed", 2: "completed", 3: "completed", 4: "completed"}
    assert runs[1]["error"] == "worker killed by signal 9 (SIGKILL)"
    rows = summary_rows(sweep)
    assert rows["1"]["status"] == "failed" and rows["1"]["error"] == runs[1]["error"]
    assert "1 of 5 jobs failed:" in proc.stderr
    assert ("  job 1 (+experiment=params processes=[time,flaky] processes.flaky.mode=kill): "
            "worker killed by signal 9 (SIGKILL)") in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("igm_run: error:")]
    assert errors == ["igm_run: error: job 1 (+experiment=params processes=[time,flaky] "
                      "processes.flaky.mode=kill): worker killed by signal 9 (SIGKILL)"]


def test_failed_jobs_are_retried_but_not_configuration_errors(experiment_dir, tmp_path):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes=[time,flaky]",
                    "processes.flaky.mode=kill_once,fail_once,ok", "processes.time.end=3,-1",
                    "core.retries=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "--multirun"], cwd, env=flaky_env(tmp_path))
    assert proc.returncode == 1  # the jobs with end=-1 cannot run
    rows = summary_rows(sweep_dir(cwd))
    by_mode = {}
    for row in rows.values():
        mode = next(o.split("=")[1] for o in row["overrides"].split() if "mode=" in o)
        end = next(o.split("=")[1] for o in row["overrides"].split() if "end=" in o)
        by_mode[(mode, end)] = (row["status"], row["attempts"])
    assert by_mode == {
        ("kill_once", "3"): ("completed", "2"),  # killed once, then continued
        ("fail_once", "3"): ("completed", "2"),
        ("ok", "3"): ("completed", "1"),
        # a configuration error fails the same way: not retried
        ("kill_once", "-1"): ("failed", "1"),
        ("fail_once", "-1"): ("failed", "1"),
        ("ok", "-1"): ("failed", "1"),
    }
    assert "attempt 2 of 3" in proc.stdout + proc.stderr


def test_resume_runs_only_what_the_sweep_left_undone(experiment_dir, tmp_path):
    env = flaky_env(tmp_path)
    cwd = experiment_dir("params", TINY)
    args = ["+experiment=params", "processes=[time,flaky]",
            "processes.flaky.mode=ok,fail_once,term_once,ok", "--multirun"]
    first = run_igm(args, cwd, env=env)
    # SIGTERM stops the sweep (one process runs every job) after a checkpoint
    assert first.returncode == 128 + signal.SIGTERM
    sweep = sweep_dir(cwd)
    rows = summary_rows(sweep)
    assert [rows[k]["status"] for k in "0123"] == [
        "completed", "failed", "interrupted", "not started"]
    assert rows["3"]["error"] == "never started (the sweep stopped before it)"
    relative = sweep.relative_to(cwd)  # as the user gave it (Hydra's default)
    assert f"1 of 4 jobs not started (igm_run --resume {relative} runs them):" in first.stderr
    lines = [ln for ln in first.stderr.splitlines() if ln.startswith("igm_run:")]
    assert len(lines) == 1 and lines[0].startswith("igm_run: interrupted by SIGTERM at t=2 yr")
    assert lines[0].endswith(f"continue it with: igm_run --resume {relative}")
    done = (sweep / "0" / "run_summary.json").read_text()
    interrupted = json.loads((sweep / "2" / "run_summary.json").read_text())

    again = run_igm(["--resume", str(sweep)], tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = jobs(sweep)
    assert {k: r["status"] for k, r in runs.items()} == dict.fromkeys(range(4), "completed")
    assert (sweep / "0" / "run_summary.json").read_text() == done  # not run again
    assert [runs[k]["attempts"] for k in range(1, 4)] == [2, 2, 1]
    assert runs[2]["restarted_from"] == interrupted["checkpoint"]
    assert checkpoint.load(interrupted["checkpoint"]).clock["t"] == 2.0
    assert [runs[k]["series"]["t"] for k in range(4)] == [[0.0, 1.0, 2.0, 3.0]] * 4
    assert {r["status"] for r in summary_rows(sweep).values()} == {"completed"}
    assert "sweep summary: 4 of 4 jobs completed" in again.stderr

"""Sweeps through Hydra's Ray launcher with the shipped ``ray_cluster`` preset
(the 'ray' extra): on a Ray instance the launcher starts, on a Ray head node
started beforehand (joined with ``ray.init.address=auto`` and through the Ray
Client, ``ray://HOST:PORT``), and a Ray task whose worker dies, which fails
only its own job.

The head node is started once for the module, from a folder other than the
launch folder (as a cluster is), with a tiny third-party plugin on its
workers' PYTHONPATH (``kill``: its update hook kills its process with
SIGKILL), and stopped by signalling the ``ray start --block`` process that
owns it (``ray stop`` would stop every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import igm_run_exe, run_igm, write_fake_dist
from test_multirun import TINY, jobs, overlap, summary_rows, sweep_dir

from hydra_plugins.igm_launchers.launchers import ray_init_settings, ray_remote_settings

pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                    reason="the Ray launcher is the 'ray' extra: pip install 'igm-core[ray]'")

KILL = """
import os
import signal
from dataclasses import dataclass

from igm_core import hookimpl


@dataclass
class Params:
    pass


@hookimpl
def igm_process_update(state):
    with open("kills.txt", "a") as fh:  # in the folder the job runs from
        fh.write(f"{os.getpid()}\\n")
    os.kill(os.getpid(), signal.SIGKILL)
"""
"""A process plugin that kills the process running it at its first update,
after adding its process id to ``kills.txt`` in the current folder."""

RAY_TEMP = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray"
"""Ray's folder on this machine: sessions, the address of the latest cluster."""

START_TIMEOUT_S = 120
"""The longest a head node may take to start (s)."""


@dataclass
class Head:
    """A Ray head node running on this machine for the module's tests."""

    client_port: int
    """Port of its Ray Client server (``ray://127.0.0.1:PORT``)."""
    session: Path
    """Its session folder (``logs/`` holds one log per worker process)."""
    site: Path
    """Folder on its workers' PYTHONPATH holding the ``kill`` plugin."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
"""Ray's environment in these tests: no usage reports, no token
authentication (which a new Ray instance turns on by default, writing a
token to ~/.ray, and which a Ray Client with an explicit address does not
use unless told)."""


def _with_site(site: Path) -> str:
    """PYTHONPATH with ``site`` in front of this environment's."""
    return os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def _ray_env() -> dict[str, str]:
    """This environment with :data:`RAY_ENV` and without a Ray address
    (``auto`` must find the head node as on a node of a cluster)."""
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **RAY_ENV}


def _ray_exe() -> str:
    """The ``ray`` command installed next to the running interpreter."""
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _forget_cluster(gcs_port: int) -> None:
    """Remove Ray's record of the latest cluster started on this machine when
    it is the head node on ``gcs_port``, as ``ray stop`` does (``ray.init()``
    and ``address=auto`` would try to join it)."""
    record = RAY_TEMP / "ray_current_cluster"
    with contextlib.suppress(OSError):
        if record.read_text().strip().endswith(f":{gcs_port}"):
            record.unlink()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A Ray head node (2 CPUs, no dashboard) started from its own folder."""
    site = write_fake_dist(tmp_path_factory.mktemp("site"), "igm-kill", "1.0",
                           {"igm.processes": {"kill": "igm_kill.plugin"}},
                           {"igm_kill.plugin": KILL})
    folder = tmp_path_factory.mktemp("ray-head")
    log = folder / "ray_start.log"
    gcs_port, client_port = _free_port(), _free_port()
    env = {**_ray_env(), "PYTHONPATH": _with_site(site),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [_ray_exe(), "start", "--head", "--block", f"--port={gcs_port}",
             f"--ray-client-server-port={client_port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"the Ray head node did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield Head(client_port, (RAY_TEMP / "session_latest").resolve(), site)
    finally:
        proc.send_signal(signal.SIGTERM)  # ray start stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _forget_cluster(gcs_port)


def run_igm_pid(args: list[str], cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``igm_run ARGS`` in ``cwd`` with ``env`` (the whole environment);
    the completed process and the igm_run process id."""
    with subprocess.Popen([igm_run_exe(), *args], cwd=cwd, env=env or _ray_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def worker_pids(session: Path) -> set[int]:
    """Process ids of the worker processes a Ray session started (from
    its logs, ``python-core-worker-ID_PID.log``)."""
    found = (re.fullmatch(r"python-core-worker-\w+_(\d+)\.log", p.name)
             for p in (session / "logs").iterdir())
    return {int(m[1]) for m in found if m}


def assert_sweep_on_head(cwd: Path, proc: subprocess.CompletedProcess[str], pid: int,
                         head: Head) -> None:
    """Both jobs of ``processes.time.end=3,4`` completed, in worker processes
    of the head node, and summary.csv lists them."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: (r["status"], r["t_end"]) for k, r in runs.items()} == {
        0: ("completed", 3.0), 1: ("completed", 4.0)}
    pids = {r["pid"] for r in runs.values()}
    assert pid not in pids
    assert pids <= worker_pids(head.session), (pids, head.session)
    assert {r["threads"] for r in runs.values()} == {1}  # ray.remote.num_cpus
    rows = summary_rows(sweep)
    assert {k: (r["status"], r["overrides"]) for k, r in rows.items()} == {
        "0": ("completed", "+experiment=params processes.time.end=3"),
        "1": ("completed", "+experiment=params processes.time.end=4")}


def test_ray_settings_for_a_new_instance_and_for_a_running_cluster(caplog):
    # null or local: a new instance here, with a small object store unless set
    assert ray_init_settings({"address": None, "num_cpus": 2}) == {
        "address": "local", "num_cpus": 2, "object_store_memory": 78643200}
    assert ray_init_settings({"object_store_memory": 10**8})["object_store_memory"] == 10**8
    # a running cluster: the settings of a new instance dropped, with a warning
    settings = {"num_cpus": 2, "num_gpus": 0, "object_store_memory": 10**8, "resources": {},
                "include_dashboard": False, "namespace": "igm", "runtime_env": None}
    for address in ("auto", "127.0.0.1:6379", "ray://127.0.0.1:10001"):
        caplog.clear()
        assert ray_init_settings({"address": address, **settings}) == {
            "address": address, "include_dashboard": False, "namespace": "igm"}
        assert (f"joining the running cluster at {address}: ignoring num_cpus, num_gpus, "
                f"object_store_memory, resources") in caplog.text
    # Ray does not rerun a task whose worker died, unless told to
    assert ray_remote_settings(None) == {"max_retries": 0}
    assert ray_remote_settings({"num_cpus": 1, "max_retries": 2}) == {
        "max_retries": 2, "num_cpus": 1}


def test_ray_local_cluster_runs_the_sweep_in_parallel(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4",
                    "hydra/launcher=ray_cluster", "+hydra.launcher.ray.init.num_cpus=2",
                    "+hydra.launcher.ray.init.include_dashboard=false", "--multirun"], cwd,
                   env=RAY_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: (r["status"], r["t_end"]) for k, r in runs.items()} == {
        0: ("completed", 3.0), 1: ("completed", 4.0)}
    assert {r["threads"] for r in runs.values()} == {1}  # ray.remote.num_cpus
    assert any(overlap(a, b) and a["pid"] != b["pid"]
               for a, b in itertools.combinations(runs.values(), 2))
    assert set(summary_rows(sweep)) == {"0", "1"}


def test_ray_joins_a_running_head_node_with_address_auto(experiment_dir, head):
    cwd = experiment_dir("params", TINY)
    proc, pid = run_igm_pid(["+experiment=params", "processes.time.end=3,4",
                             "hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=auto",
                             "--multirun"], cwd)
    assert_sweep_on_head(cwd, proc, pid, head)
    assert "Connecting to existing Ray cluster" in proc.stderr


# Ray's client proxy sometimes fails to fork the per-client server ("Other
# threads are currently calling into gRPC, skipping fork() handlers"): a race
# inside Ray, before any igm code runs on the cluster
RAY_PROXY_RACE = "Starting Ray client server failed"


def test_ray_client_runs_the_sweep_on_a_running_head_node(experiment_dir, head):
    cwd = experiment_dir("params", TINY)
    # settings of a new Ray instance (e.g. from a user's preset) are dropped
    args = ["+experiment=params", "processes.time.end=3,4", "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address=ray://127.0.0.1:{head.client_port}",
            "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.object_store_memory=100000000", "--multirun"]
    proc, pid = run_igm_pid(args, cwd)
    if proc.returncode != 0 and RAY_PROXY_RACE in proc.stderr:  # once more, from scratch
        shutil.rmtree(cwd / "multirun")
        proc, pid = run_igm_pid(args, cwd)
    assert_sweep_on_head(cwd, proc, pid, head)
    assert "ignoring num_cpus, object_store_memory" in proc.stdout


def test_a_killed_ray_worker_fails_only_its_job(experiment_dir, head):
    for name, text in (("end3", TINY), ("end4", TINY.replace("end: 3", "end: 4")),
                       ("kill", TINY.replace("[time]", "[time, kill]"))):
        cwd = experiment_dir(name, text)
    proc, _ = run_igm_pid(["+experiment=end3,kill,end4", "hydra/launcher=ray_cluster",
                           "hydra.launcher.ray.init.address=auto", "--multirun"], cwd,
                          env={**_ray_env(), "PYTHONPATH": _with_site(head.site)})
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("igm_run: error:")]
    assert len(errors) == 1 and "job 1 (+experiment=kill)" in errors[0], proc.stderr[-3000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: (r["status"], r.get("t_end")) for k, r in runs.items()} == {
        0: ("completed", 3.0), 1: ("failed", None), 2: ("completed", 4.0)}
    assert "Ray task failed" in runs[1]["error"]
    # the job ran from the launch folder, once: Ray did not run the task again
    assert (cwd / "kills.txt").read_text().split() == [str(runs[1]["pid"])]
    rows = summary_rows(sweep)
    assert [rows[k]["status"] for k in "012"] == ["completed", "failed", "completed"]
    assert rows["1"]["error"].startswith("Ray task failed: WorkerCrashedError"), rows["1"]

"""A real SLURM cluster for the submitit tests.

The ``slurm_cluster`` fixture uses a reachable cluster (``sinfo`` answers),
else starts the local one-node cluster with
``../shared/slurm/start-local-slurm.sh`` (as root; CI's ``.ci/run`` starts
it before the tests) and stops it after the session when it started it;
otherwise the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "slurm"


def _reachable() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated")
                                       for s in out.stdout.splitlines())


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A SLURM cluster reachable through sbatch, squeue, scancel and sacct."""
    if _reachable():
        yield
        return
    start = SCRIPTS / "start-local-slurm.sh"
    if not start.is_file():
        pytest.skip(f"no SLURM cluster reachable (sinfo) and no {start} to start one")
    if os.geteuid() != 0:
        pytest.skip(f"no SLURM cluster reachable; {start.name} needs root to start one")
    proc = subprocess.run(["bash", str(start)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not _reachable():
        pytest.fail(f"{start.name} failed to start SLURM: {proc.stderr.strip()[-500:]}")
    yield
    subprocess.run(["bash", str(SCRIPTS / "stop-local-slurm.sh")], capture_output=True,
                   timeout=120)


def sacct_states(job_ids: list[str], timeout: float = 60.0) -> dict[str, str]:
    """Final accounting states of SLURM jobs (array tasks as ``ID_N``), by id.

    sacct lists a finished job a little late, and array tasks one by one:
    poll until every requested id is listed with a final state (not
    PENDING/RUNNING) or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j",
                              ",".join(job_ids)], capture_output=True, text=True, timeout=30)
        states = dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)
        if all((states.get(i) or "PENDING").split()[0] not in ("PENDING", "RUNNING")
               for i in job_ids) or time.monotonic() > deadline:
            return states
        time.sleep(1.0)

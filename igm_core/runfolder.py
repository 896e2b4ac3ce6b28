"""A run folder belongs to one run: who may write in it, and what a run
finds there when it starts.

- A lock (``igm.lock``, an ``flock`` held for the whole run) keeps a second
  run out of a folder in use; the kernel drops the lock of a killed
  process, so a stale lock file is recognised and taken over.
- The folder's ``run_summary.json`` and ``config_resolved.yaml`` say what
  it holds. A run starting there with the same configuration (up to keys
  that change no result, :data:`igm_core.config.RESULT_NEUTRAL_KEYS`)
  returns a completed run's result without running it again, continues an
  interrupted, killed or failed one from its latest checkpoint, or starts
  afresh when there is none; a run of another configuration is refused
  with the first difference. That is what makes SLURM requeues and
  ``igm_run --resume`` continue where a job stopped.

No Hydra and no TensorFlow here.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igm_core import checkpoint
from igm_core.config import RESULT_NEUTRAL_KEYS
from igm_core.errors import ConfigError

LOCK = "igm.lock"
SUMMARY = "run_summary.json"
CONFIG = "config_resolved.yaml"


class RunLock:
    """An exclusive lock on a run folder for this process's run."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError naming the run that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise ConfigError(f"run folder {self.path.parent} is in use by {holder} ({LOCK}); "
                              "choose another hydra.run.dir, or wait for that run to end") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"igm_run pid {os.getpid()} on {socket.gethostname()} since "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up and remove the lock file."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values of a nested dict (lists are leaves)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _neutral(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL_KEYS)


def first_difference(there: Mapping[str, Any], here: Mapping[str, Any]) -> str:
    """The first result-changing key whose value differs between two
    configurations (nested dicts), as ``key: A there, B here``; '' if none."""
    a, b = flatten(there), flatten(here)
    for key in sorted(set(a) | set(b)):
        if _neutral(key) or a.get(key) == b.get(key):
            continue
        return f"{key}: {a.get(key, '(absent)')!r} there, {b.get(key, '(absent)')!r} here"
    return ""


@dataclass(frozen=True)
class Previous:
    """What a run folder held when a run started in it: the summary (``{}``
    when none), the configuration (``{}``) and its latest checkpoint."""

    summary: dict[str, Any]
    config: dict[str, Any]
    checkpoint: Path | None

    @property
    def status(self) -> str | None:
        """completed, failed, interrupted, running (a killed run), or None."""
        return self.summary.get("status")

    @property
    def attempts(self) -> int:
        """How many times a run started in the folder so far."""
        return int(self.summary.get("attempts") or (1 if self.summary else 0))


def previous_run(folder: Path) -> Previous:
    """Read what ``folder`` holds (nothing, for a new folder)."""
    import yaml

    folder = Path(folder)
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        summary = {}
    try:
        config = yaml.safe_load((folder / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    return Previous(summary, config, checkpoint.latest(folder))


@dataclass(frozen=True)
class Plan:
    """What a starting run does in its folder: ``action`` is ``fresh``,
    ``continue`` (from ``checkpoint``) or ``done`` (already completed)."""

    action: str
    checkpoint: Path | None = None
    reason: str = ""


def plan(folder: Path, prev: Previous, config: Mapping[str, Any], restart: str,
         launch_dir: Path) -> Plan:
    """Decide what a run with ``config`` (the resolved configuration as a
    nested dict) and ``core.restart`` = ``restart`` does in ``folder``,
    which held ``prev``; ConfigError when the folder holds another run."""
    if restart:
        path = checkpoint.resolve(restart, launch_dir)
        return Plan("continue", path, f"continuing from {path} (core.restart)")
    if not prev.summary and not prev.config:
        return Plan("fresh")
    diff = first_difference(prev.config, config)
    if diff:
        raise ConfigError(
            f"run folder {folder} holds a run of another configuration ({diff}); choose another "
            f"hydra.run.dir, or continue that run with another configuration with "
            f"core.restart={folder}")
    status = prev.status if prev.status in ("failed", "interrupted") else "killed"
    if prev.status == "completed":
        return Plan("done", reason="already completed")
    if prev.checkpoint is not None:
        return Plan("continue", prev.checkpoint,
                    f"continuing the {status} run of this folder from {prev.checkpoint}")
    return Plan("fresh", reason=f"starting afresh: the {status} run of this folder left no "
                "checkpoint")

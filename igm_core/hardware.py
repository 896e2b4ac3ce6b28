"""Devices and threads for one run, set before TensorFlow starts.

``core.hardware.visible_gpus`` pins a run to GPUs: a list of indices into
the GPUs this process may use (those of ``CUDA_VISIBLE_DEVICES`` when it is
set, e.g. by SLURM, else every GPU of the machine), ``[]`` for CPU only,
``auto`` for one GPU per job round-robin by job number, ``null`` to leave the
environment as it is. A machine without GPUs falls back to the CPU with a
log line.

TensorFlow reads its devices and thread counts once per process. A job that
lands in a process whose TensorFlow already started with other devices (a
reused joblib worker, or the basic launcher's single process) is therefore
run in a fresh child process (:func:`run_engine`), so the pinning holds.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from igm_core import compile_cache
from igm_core.config import HardwareParams
from igm_core.errors import ConfigError

log = logging.getLogger("igm")

_CVD = "CUDA_VISIBLE_DEVICES"
# CUDA_VISIBLE_DEVICES as this process found it (before any job pinned a GPU).
_INHERITED_CVD = os.environ.get(_CVD)
# What the first TensorFlow-using job of this process set (GPU list string,
# intra-op threads): TensorFlow keeps it for the life of the process.
_process_setting: tuple[str | None, int] | None = None


@dataclass(frozen=True)
class Placement:
    """Where one job runs: ``cuda_visible`` is the CUDA_VISIBLE_DEVICES value
    in force ("-1" hides every GPU; None: not set),
    ``threads`` the TensorFlow intra-op threads (0: TensorFlow's default),
    ``fresh_process`` whether the job must run in a child process,
    ``compile_cache`` the folder of TensorFlow's XLA compilation cache
    (None: no cache; see :mod:`igm_core.compile_cache`)."""

    cuda_visible: str | None
    threads: int
    fresh_process: bool = False
    compile_cache: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record kept in run_summary.json."""
        return {"cuda_visible_devices": self.cuda_visible, "threads": self.threads,
                "fresh_process": self.fresh_process, "compile_cache": self.compile_cache}


def available_gpus() -> list[str]:
    """GPU identifiers this process may use, without starting TensorFlow:
    the entries of the inherited CUDA_VISIBLE_DEVICES, else one per GPU the
    NVIDIA driver lists in /proc (an empty list on CPU-only machines)."""
    if _INHERITED_CVD is not None:
        return [g.strip() for g in _INHERITED_CVD.split(",")
                if g.strip() and not g.strip().startswith("-")]
    driver = Path("/proc/driver/nvidia/gpus")
    count = len(list(driver.iterdir())) if driver.is_dir() else 0
    return [str(i) for i in range(count)]


def gpu_list(hw: HardwareParams, job_num: int = 0, gpus: list[str] | None = None
             ) -> list[str] | None:
    """The GPU identifiers a job should see, or None to leave the
    environment as it is. ``auto`` gives job ``job_num`` one GPU,
    round-robin; an empty result means CPU only."""
    value = hw.visible_gpus
    if value is None:
        return None
    gpus = available_gpus() if gpus is None else gpus
    if value == "auto":
        if not gpus:
            log.info("core.hardware.visible_gpus=auto: no GPU found, running on the CPU")
            return []
        return [gpus[job_num % len(gpus)]]
    try:
        wanted = [int(value)] if isinstance(value, int) else [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError("core.hardware.visible_gpus must be a list of GPU indices, [] or "
                          f"'auto', got {value!r}") from None
    if wanted and not gpus:
        log.warning("core.hardware.visible_gpus=%s: no GPU on this machine, running on the CPU",
                    wanted)
        return []
    bad = [i for i in wanted if not 0 <= i < len(gpus)]
    if bad:
        raise ConfigError(f"core.hardware.visible_gpus: GPU index {bad[0]} asked for, but this "
                          f"process sees {len(gpus)} GPU(s) (indices 0 to {len(gpus) - 1})")
    return [gpus[i] for i in wanted]


def thread_share(hw: HardwareParams, launcher: Mapping[str, Any] | None) -> int:
    """TensorFlow intra-op threads for one job: ``core.hardware.threads``
    when positive; in a joblib sweep the cores divided by the parallel jobs
    (``n_jobs``, joblib's negative values counted from the core count); under
    submitit the job's ``cpus_per_task``, under Ray ``ray.remote.num_cpus``;
    else 0 (TensorFlow's default)."""
    if hw.threads > 0:
        return int(hw.threads)
    launcher = launcher or {}
    target = str(launcher.get("_target_", ""))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
        return max(1, cpus // parallel)
    if launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    remote = (launcher.get("ray") or {}).get("remote") or {}
    if remote.get("num_cpus"):
        return int(remote["num_cpus"])
    return 0


def configure(hw: HardwareParams, job_num: int = 0,
              launcher: Mapping[str, Any] | None = None) -> Placement:
    """Decide where a job runs and, unless it needs a fresh process, apply
    it to this process's environment (CUDA_VISIBLE_DEVICES,
    TF_NUM_INTRAOP_THREADS, TF_XLA_FLAGS) before TensorFlow starts."""
    global _process_setting
    gpus = gpu_list(hw, job_num)
    cvd = os.environ.get(_CVD) if gpus is None else (",".join(gpus) or "-1")
    cache = compile_cache.cache_folder(hw.compile_cache)
    placement = Placement(cvd, thread_share(hw, launcher),
                          compile_cache=None if cache is None else str(cache))
    wanted = (placement.cuda_visible, placement.threads)
    if "tensorflow" in sys.modules and _process_setting not in (None, wanted):
        log.info("TensorFlow already started in this process with CUDA_VISIBLE_DEVICES=%s "
                 "and %s threads: running this job in a fresh process", *_process_setting)
        return replace(placement, fresh_process=True)
    _apply(placement)
    _process_setting = wanted
    return placement


def _apply(placement: Placement) -> None:
    if placement.cuda_visible is not None:
        os.environ[_CVD] = placement.cuda_visible
    if placement.threads > 0:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(placement.threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if placement.compile_cache is not None:
        compile_cache.enable(Path(placement.compile_cache))


def devices() -> list[str]:
    """Devices TensorFlow sees, or ['cpu'] when TensorFlow was not started."""
    if "tensorflow" not in sys.modules:
        return ["cpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.get_visible_devices()]


def process_info() -> dict[str, Any]:
    """Host name, process id and, under SLURM, the job id (``ARRAYID_TASK``
    for a job array, as sacct lists it), recorded in run_summary.json."""
    env = os.environ
    slurm = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
             if "SLURM_ARRAY_TASK_ID" in env else env.get("SLURM_JOB_ID"))
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": slurm}


def report_cpu_fallback(placement: Placement) -> None:
    """Say so when the job was given GPUs but TensorFlow (started) finds
    none: it then runs on the CPU."""
    asked = [g for g in (placement.cuda_visible or "").split(",") if g and not g.startswith("-")]
    if asked and not any(":GPU:" in d for d in devices()):
        log.warning("CUDA_VISIBLE_DEVICES=%s but TensorFlow finds no GPU on this machine: "
                    "running on the CPU", placement.cuda_visible)


def _run_here(selection: Any, ctx: Any, progress: str, result: Any, placement: Placement,
              checkpoints: Any, restart: Path | None, signals: Any = None) -> dict[str, Any]:
    from igm_core import engine
    from igm_core.quiet import start_tensorflow

    start_tensorflow(quiet=not log.isEnabledFor(logging.DEBUG))
    report_cpu_fallback(placement)
    engine.run(selection, ctx, progress=progress, result=result, checkpoints=checkpoints,
               restart=restart, signals=signals)
    return {"devices": devices(), **process_info()}


def run_engine(selection: Any, ctx: Any, progress: str, result: Any, placement: Placement,
               checkpoints: Any = None, restart: Path | None = None,
               signals: Any = None) -> dict[str, Any]:
    """Run :func:`igm_core.engine.run` (continuing from the checkpoint file
    ``restart`` when given) in this process, or in a fresh child process
    when ``placement.fresh_process``; fill ``result`` (a RunResult) in place
    and return the devices and process the run used. Re-raises the run's
    error (a fresh process's as a PluginRuntimeError line, or
    RunInterrupted); signals that stop or checkpoint a run are passed on to
    the child."""
    if not placement.fresh_process:
        return _run_here(selection, ctx, progress, result, placement, checkpoints, restart,
                         signals)
    from igm_core.errors import PluginRuntimeError, RunInterrupted
    from igm_core.interrupts import CHECKPOINT, STOP

    log_files = [h.baseFilename for h in logging.getLogger().handlers
                 if isinstance(h, logging.FileHandler)]
    with tempfile.TemporaryDirectory(prefix="igm-job-") as tmp:
        answer = Path(tmp) / "result.pickle"
        request = pickle.dumps((selection, ctx, progress, placement, log.level, log_files,
                                str(answer), checkpoints, restart))
        code = "from igm_core.hardware import fresh_process_main; fresh_process_main()"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        previous = {signum: signal.signal(signum, lambda n, _f: child.send_signal(n))
                    for signum in (*STOP, *CHECKPOINT)} if signals is not None else {}
        try:
            child.communicate(request)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if not answer.is_file():
            raise PluginRuntimeError(f"the job's fresh process exited with code "
                                     f"{child.returncode} before reporting a result")
        child_result, info, error = pickle.loads(answer.read_bytes())
    result.__dict__.update(child_result.__dict__)
    if isinstance(error, RunInterrupted):
        raise error
    if error is not None:
        raise PluginRuntimeError(error)
    return info


def fresh_process_main() -> None:
    """Body of a job's fresh process: read the pickled request on stdin, pin
    devices and threads before TensorFlow starts, log into the job's log
    files, run, and pickle (RunResult, devices and process, error: None, a
    line, or the RunInterrupted) to the answer path."""
    global _process_setting
    (selection, ctx, progress, placement, level, log_files, answer, checkpoints,
     restart) = pickle.load(sys.stdin.buffer)
    _apply(placement)
    _process_setting = (placement.cuda_visible, placement.threads)
    from igm_core import engine
    from igm_core.errors import RunInterrupted

    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for handler in [logging.StreamHandler(), *map(logging.FileHandler, log_files)]:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(level)
    result = engine.RunResult()
    error: Any = None
    info: dict[str, Any] = {}
    try:
        info = _run_here(selection, ctx, progress, result, placement, checkpoints, restart)
    except RunInterrupted as exc:
        error = exc
    except Exception as exc:
        error = result.error or f"{type(exc).__name__}: {exc}"
    info = info or {"devices": devices(), **process_info()}
    Path(answer).write_bytes(pickle.dumps((result, info, error)))

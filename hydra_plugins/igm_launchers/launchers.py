"""Hydra launchers that keep a sweep going whatever happens to one job.

``igm_run`` registers these under Hydra's own names (``basic``, ``joblib``,
``submitit_local``, ``submitit_slurm`` and, with the Ray extra, ``ray``),
with the same settings, so ``hydra/launcher=joblib`` and the shipped presets
get them. Over Hydra's, each:

- reports a failure as that job's only: a joblib worker killed by a signal
  (an out-of-memory kill) fails its job with the cause and the other jobs,
  started or not, still run (jobs run in a process pool that replaces dead
  workers, :mod:`pebble`); a SLURM job that ends without a result, a failed
  Ray task, the same;
- runs a failed job again up to ``core.retries`` times, unless it failed on a
  configuration or input error that would fail the same way; each job
  records its attempts in ``run_summary.json``;
- writes ``sweep_jobs.json`` in the sweep folder (every job's number and
  overrides), so the sweep summary lists jobs that never started;
- on SLURM, says while it waits which jobs are pending and why, and stops a
  job that can never start (more CPUs, memory or GPUs than any node has, a
  partition, account or QOS refused) with one line naming SLURM's reason;
  a job that SLURM times out or preempts is requeued and continues from its
  checkpoint (submitit's requeue, ``max_num_timeout`` in the presets);
- on Ray, joins a running cluster (``ray.init.address=auto`` or
  ``ray://HOST:PORT``) without the settings Ray refuses there, runs each
  job from the launch folder (a cluster's workers start elsewhere), and
  starts a Ray instance of its own for ``address`` null even where a
  cluster runs on this machine.

This module imports Hydra and its launcher plugins (as :mod:`igm_core.app`
does); submitit, pebble and Ray only when their launcher runs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import (
    JoblibLauncher as HydraJoblibLauncher,
)
from hydra_plugins.hydra_submitit_launcher.config import (
    BaseQueueConf,
    LocalQueueConf,
    SlurmQueueConf,
)
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    LocalLauncher as HydraLocalLauncher,
)
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as HydraSlurmLauncher,
)
from omegaconf import OmegaConf, open_dict

from igm_core import runfolder
from igm_core.errors import ConfigError, DataError, IgmError, PluginError, RunInterrupted
from igm_core.files import write_json
from igm_core.sweep import MANIFEST

log = logging.getLogger("igm")
USER_ERRORS = (ConfigError, DataError, PluginError)
"""Failures that a retry would repeat: not retried."""


class JobFailed(IgmError):
    """A job ended without a result of its own (its worker or process died,
    SLURM or Ray gave up on it); the message says why."""


# -- one job's record ------------------------------------------------------------


@dataclass
class Job:
    """One job of a batch: its number, overrides and folder."""

    num: int
    overrides: list[str]
    folder: Path

    @property
    def label(self) -> str:
        """``job N (overrides)`` for messages."""
        return f"job {self.num} ({' '.join(filter_overrides(self.overrides))})"


def _signal_cause(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


def mark_failed(job: Job, cause: str) -> None:
    """Record ``cause`` in the job's ``run_summary.json`` when the job could
    not (it died while running, or never started); a summary the job wrote
    itself with a final status is kept."""
    path = job.folder / runfolder.SUMMARY
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {"job_num": job.num, "overrides": job.overrides}
    if record.get("status") not in (None, "running"):
        return
    record.update(status="failed", error=cause, ended_at=time.time())
    write_json(path, record)


def failed_return(job: Job, cause: str) -> JobReturn:
    """A Hydra JobReturn for a job that ended without one."""
    ret = JobReturn(overrides=job.overrides, working_dir=str(job.folder), task_name="igm")
    ret.status = JobStatus.FAILED
    ret.return_value = JobFailed(f"{job.label}: {cause}")
    return ret


def _error_of(ret: JobReturn) -> BaseException | None:
    return ret._return_value if ret.status == JobStatus.FAILED else None


def retryable(ret: JobReturn) -> bool:
    """Whether running a failed job again may help."""
    error = _error_of(ret)
    return error is not None and not isinstance(error, (*USER_ERRORS, RunInterrupted))


# -- what every launcher here does around its own way of running jobs ------------


class Resilient:
    """Mixin for a Hydra launcher: subclasses implement :meth:`run_batch`
    (run these jobs, return one JobReturn per job, never raise for one
    job's failure)."""

    config: Any
    hydra_context: Any
    task_function: Any

    def jobs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Job]:
        """The batch's jobs, with the folders Hydra will give them."""
        sweep = self.config.hydra.sweep
        by_number = sweep._get_node("subdir")._value() == "${hydra.job.num}"
        out = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            if by_number:
                folder = Path(str(sweep.dir)) / str(num)
            else:
                cfg = self.sweep_config(list(overrides), num)
                folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            out.append(Job(num, list(overrides), folder))
        return out

    def sweep_config(self, overrides: list[str], num: int, job_id: Any = None) -> Any:
        """Hydra's configuration of one job (job number and id set)."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = num if job_id is None else job_id
        return cfg

    def write_manifest(self, jobs: list[Job]) -> None:
        """Add the batch's jobs to ``sweep_jobs.json`` in the sweep folder."""
        path = Path(str(self.config.hydra.sweep.dir)) / MANIFEST
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        known.update({str(j.num): {"overrides": j.overrides, "folder": str(j.folder)}
                      for j in jobs})
        write_json(path, known)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        """Run every job, retry the failures ``core.retries`` allows, and
        return one JobReturn per job in order."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = self.jobs(job_overrides, initial_job_idx)
        self.write_manifest(jobs)
        for job in jobs:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
        results = dict(zip((j.num for j in jobs), self.run_batch(jobs), strict=True))
        retries = int(OmegaConf.select(self.config, "core.retries", default=0) or 0)
        for attempt in range(1, retries + 1):
            again = [j for j in jobs if retryable(results[j.num])]
            if not again:
                break
            for job in again:
                log.warning("%s failed (%s): attempt %d of %d", job.label,
                            _error_of(results[job.num]), attempt + 1, retries + 1)
            results.update(zip((j.num for j in again), self.run_batch(again), strict=True))
        for job in jobs:
            error = _error_of(results[job.num])
            if isinstance(error, JobFailed):
                mark_failed(job, str(error).split(": ", 1)[1])
        return [results[j.num] for j in jobs]

    def run_batch(self, jobs: list[Job]) -> list[JobReturn]:  # pragma: no cover - abstract
        raise NotImplementedError


def _run_in_process(context: Any, config: Any, task_function: Any, overrides: list[str],
                    num: int, singleton_state: Any, job_id: Any = None) -> JobReturn:
    """One job in the current process, as Hydra's launchers run it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job

    setup_globals()
    Singleton.set_state(singleton_state)
    cfg = context.config_loader.load_sweep_config(config, overrides)
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.job.id = num if job_id is None else job_id
    HydraConfig.instance().set_config(cfg)
    return run_job(hydra_context=context, task_function=task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _run_pickled(payload: bytes) -> bytes:
    """:func:`_run_in_process` in a worker, its arguments and its JobReturn
    pickled with cloudpickle (Hydra's state holds functions plain pickle
    cannot carry)."""
    import cloudpickle

    return cloudpickle.dumps(_run_in_process(*cloudpickle.loads(payload)))


# -- basic: one job after the other, in this process ------------------------------


class BasicLauncher(Resilient, HydraBasicLauncher):
    """Hydra's basic launcher (jobs one after the other in this process),
    with retries and the job manifest."""

    def run_batch(self, jobs: list[Job]) -> list[JobReturn]:
        out = []
        for job in jobs:
            out.append(_run_in_process(self.hydra_context, self.config, self.task_function,
                                       job.overrides, job.num, Singleton.get_state()))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return out


@dataclass
class BasicLauncherConf:
    _target_: str = "hydra_plugins.igm_launchers.launchers.BasicLauncher"


# -- joblib: parallel worker processes that may die -------------------------------


def _workers(n_jobs: int | None, count: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = int(n_jobs or -1)
    n = n if n > 0 else max(1, (cpus or 1) + 1 + n)
    return max(1, min(n, count))


class JoblibLauncher(Resilient, HydraJoblibLauncher):
    """Hydra's joblib launcher settings, jobs in a pool of worker processes
    (``n_jobs`` of them, as joblib counts) that are reused from job to job
    and replaced when one dies: its job fails with the cause, the others
    go on."""

    def run_batch(self, jobs: list[Job]) -> list[JobReturn]:
        import multiprocessing

        import cloudpickle
        from pebble import ProcessExpired, ProcessPool

        workers = _workers(self.joblib.get("n_jobs"), len(jobs))
        log.info("joblib: launching %d jobs on %d worker processes", len(jobs), workers)
        state = Singleton.get_state()
        out: list[JobReturn] = []
        with ProcessPool(max_workers=workers,
                         context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.schedule(_run_pickled, args=(cloudpickle.dumps((
                self.hydra_context, self.config, self.task_function, job.overrides, job.num,
                state)),)) for job in jobs]
            for job, future in zip(jobs, futures, strict=True):
                try:
                    out.append(cloudpickle.loads(future.result()))
                except ProcessExpired as exc:
                    out.append(failed_return(job, f"worker {_signal_cause(exc.exitcode)}"))
                except Exception as exc:  # the job could not be sent or returned
                    out.append(failed_return(job, f"{type(exc).__name__}: {exc}"))
        return out


# -- submitit: local processes and SLURM ---------------------------------------------

NEVER_STARTS = {
    "PartitionConfig": "the partition's nodes cannot hold the request",
    "PartitionTimeLimit": "timeout_min is over the partition's time limit",
    "BadConstraints": "no node satisfies the constraints",
    "InvalidAccount": "the account is invalid",
    "InvalidQOS": "the QOS is invalid",
    "AccountNotAllowed": "the account may not use this partition",
    "QOSNotAllowed": "the QOS may not be used on this partition",
    "DependencyNeverSatisfied": "a dependency can never be satisfied",
}
"""SLURM pending reasons of a job that will never start, in plain words."""

ENDED = {
    "OUT_OF_MEMORY": "ran out of its memory (raise mem_gb)",
    "TIMEOUT": "reached its time limit (timeout_min)",
    "NODE_FAIL": "lost its node",
    "CANCELLED": "was cancelled",
    "PREEMPTED": "was preempted",
    "FAILED": "failed",
    "BOOT_FAIL": "could not boot its node",
}


CONTINUABLE = ("TIMEOUT", "PREEMPTED", "NODE_FAIL")
"""How a SLURM job may end that submitting it again continues (from its
checkpoint)."""


def squeue_states(ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(state, reason) of SLURM jobs by id, from ``squeue`` (jobs it no
    longer lists are absent)."""
    if not ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def largest_node(partition: str | None) -> str:
    """CPUs, memory and GRES of the largest node of a partition (``sinfo``)."""
    args = ["sinfo", "-h", "-e", "-o", "%c|%m|%G"] + (["-p", partition] if partition else [])
    try:
        rows = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    best = max((r.split("|") for r in rows if r.count("|") == 2),
               key=lambda r: (int(r[0].rstrip("+") or 0), int(r[1].rstrip("+") or 0)),
               default=None)
    if best is None:
        return ""
    gres = "" if best[2] in ("(null)", "") else f", {best[2]}"
    return f"its largest node has {best[0]} CPUs, {int(best[1]) // 1024} GB{gres}"


class _Submitit(Resilient):
    """Submitit executors with every job waited for on its own."""

    _EXECUTOR = "abstract"
    poll_s: float = 5.0

    def request(self) -> str:
        """The resources a job asks for, for messages."""
        p = self.params
        keys = ("partition", "account", "qos", "cpus_per_task", "mem_gb", "gpus_per_node",
                "timeout_min")
        return ", ".join(f"{k}={p[k]}" for k in keys if p.get(k) is not None)

    def executor(self) -> Any:
        """A submitit executor with the launcher's settings."""
        import submitit

        p = dict(self.params)
        folder = p.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": p.pop("max_num_timeout")} \
            if "max_num_timeout" in p else {}
        executor = submitit.AutoExecutor(folder=folder, cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in p.items()})
        return executor

    def submit(self, jobs: list[Job]) -> list[Any] | str:
        """Submit the jobs as one array; their handles, or why the scheduler
        refused them."""
        state = Singleton.get_state()
        try:
            handles = self.executor().map_array(
                self, [j.overrides for j in jobs], ["hydra.sweep.dir"] * len(jobs),
                [j.num for j in jobs], [f"job_id_for_{j.num}" for j in jobs],
                [state] * len(jobs))
        except Exception as exc:  # sbatch refused the array
            reason = next((ln.split("error:", 1)[1].strip() for ln in str(exc).splitlines()
                           if "error:" in ln), " ".join(str(exc).split())[-300:])
            node = largest_node(self.params.get("partition")) if self._EXECUTOR == "slurm" else ""
            return (f"{self._EXECUTOR.upper() if self._EXECUTOR == 'slurm' else 'submitit'} "
                    f"refused the job: {reason} ({self.request()}{'; ' + node if node else ''})")
        log.info("submitit '%s': %d jobs submitted (%s)", self._EXECUTOR, len(jobs),
                 ", ".join(h.job_id for h in handles))
        return handles

    def run_batch(self, jobs: list[Job]) -> list[JobReturn]:
        """Submit, wait, and submit again the jobs that stopped at their time
        limit (or lost their node, or were preempted) after a checkpoint, up
        to ``max_num_timeout`` times: they continue from it."""
        results: dict[int, JobReturn] = {}
        pending = jobs
        for round_ in range(int(self.params.get("max_num_timeout") or 0) + 1):
            handles = self.submit(pending)
            if isinstance(handles, str):
                results.update((j.num, failed_return(j, handles)) for j in pending)
                break
            again = []
            for job, (ret, stopped) in zip(pending, self.wait(pending, handles), strict=True):
                results[job.num] = ret
                if stopped:
                    again.append(job)
            if not again or round_ == int(self.params.get("max_num_timeout") or 0):
                break
            for job in again:
                log.warning("%s: %s; submitted again to continue from its checkpoint", job.label,
                            _error_of(results[job.num]))
            pending = again
        return [results[j.num] for j in jobs]

    def wait(self, jobs: list[Job], handles: list[Any]) -> list[tuple[JobReturn, bool]]:
        """Wait for every job; what each ended with, and whether it stopped
        at a time limit (or by preemption, or with its node) after a
        checkpoint it can continue from."""
        results: dict[int, tuple[JobReturn, bool]] = {}
        seen: dict[str, tuple[str, str]] = {}
        while len(results) < len(jobs):
            waiting = [(j, h) for j, h in zip(jobs, handles, strict=True) if j.num not in results]
            states = self.states([h.job_id for _, h in waiting])
            for job, handle in waiting:
                state = states.get(handle.job_id)
                if state is not None and state != seen.get(handle.job_id):
                    seen[handle.job_id] = state
                    log.info("%s, SLURM job %s: %s", job.label, handle.job_id,
                             f"{state[0]} ({state[1]})" if state[1] not in ("None", "") else
                             state[0])
                if state is not None and state[0] == "PENDING" and state[1] in NEVER_STARTS:
                    handle.cancel(check=False)
                    results[job.num] = (failed_return(job, self.never_starts(state[1])), False)
                elif handle.done():
                    results[job.num] = self.outcome(job, handle)
            if len(results) < len(jobs):
                time.sleep(self.poll_s)
        return [results[j.num] for j in jobs]

    def states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(state, reason) of the jobs still queued (none for local jobs)."""
        return {}

    def never_starts(self, reason: str) -> str:
        """One line for a job SLURM will never start."""
        node = largest_node(self.params.get("partition"))
        return (f"SLURM will never start it: {reason} ({NEVER_STARTS[reason]}: "
                f"{self.request()}{'; ' + node if node else ''}); it was cancelled")

    def outcome(self, job: Job, handle: Any) -> tuple[JobReturn, bool]:
        """The JobReturn of a finished job, or why it has none; and whether
        the scheduler stopped it (time limit, preemption, node failure) after
        it wrote a checkpoint, so that submitting it again continues it."""
        try:
            return handle.results()[0], False
        except Exception as exc:
            state = str(getattr(handle, "state", "") or "").split()[0:1]
            word = state[0] if state else ""
            previous = runfolder.previous_run(job.folder)
            summary = previous.summary
            stopped = (word in CONTINUABLE and previous.checkpoint is not None
                       and summary.get("status") in ("interrupted", "running"))
            if stopped:
                cause = f"job {handle.job_id} {ENDED[word]} ({word}) after a checkpoint"
            elif summary.get("status") == "interrupted":
                cause = f"{summary.get('error')}; continue it with igm_run --resume"
            elif word in ENDED:
                cause = f"job {handle.job_id} {ENDED[word]} ({word})"
            else:
                cause = f"job {handle.job_id} ended without a result: " + " ".join(
                    str(exc).split())[:300]
            return failed_return(job, cause), stopped


class LocalLauncher(_Submitit, HydraLocalLauncher):
    """Hydra's submitit_local launcher, each job waited for on its own."""

    _EXECUTOR = "local"


class SlurmLauncher(_Submitit, HydraSlurmLauncher):
    """Hydra's submitit_slurm launcher, each job waited for on its own,
    pending reasons reported, never-starting jobs cancelled."""

    _EXECUTOR = "slurm"

    def states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        return squeue_states(ids)


def __getattr__(name: str) -> Any:
    # the Ray launcher subclasses a plugin that imports Ray: built when used
    if name == "RayLauncher":
        return _ray_class()
    raise AttributeError(name)


# -- Ray ---------------------------------------------------------------------------

REFUSED_ON_A_CLUSTER = ("object_store_memory", "num_cpus", "num_gpus", "resources", "labels",
                        "_memory", "_system_config", "_enable_object_reconstruction",
                        "_node_name")
"""ray.init settings that only a new Ray instance takes: Ray refuses them when
joining a running cluster, directly (``auto``, ``HOST:PORT``) or through the
Ray Client (``ray://HOST:PORT``, whose server joins the cluster with them)."""


def ray_init_settings(init: dict[str, Any]) -> dict[str, Any]:
    """``ray.init`` keyword arguments. ``address`` null (or ``local``) starts a
    new Ray instance on this machine for the sweep, with a small object store
    (75 MiB, as Hydra's launcher gives it), even where a cluster runs here
    (Ray would join it); any other address (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``) joins a running cluster, without the settings Ray
    refuses there (dropped with a warning)."""
    init = {k: v for k, v in init.items() if v is not None}
    if init.get("address", "local") == "local":
        return {"object_store_memory": 78643200, **init, "address": "local"}
    dropped = sorted(k for k in init if k in REFUSED_ON_A_CLUSTER)
    if dropped:
        log.warning("ray: joining the running cluster at %s: ignoring %s (settings of a new Ray "
                    "instance only)", init["address"], ", ".join(dropped))
    return {k: v for k, v in init.items() if k not in REFUSED_ON_A_CLUSTER}


def ray_remote_settings(remote: dict[str, Any] | None) -> dict[str, Any]:
    """``ray.remote`` options of a job's task: Ray does not run a task again
    when its worker dies (``max_retries`` 0, unless set): ``core.retries``
    decides, and each attempt is recorded in the job's ``run_summary.json``."""
    return {"max_retries": 0, **{k: v for k, v in (remote or {}).items() if v is not None}}


def _run_on_ray(launch_dir: str, *job: Any) -> JobReturn:
    """One job in a Ray worker: :func:`_run_in_process` with the arguments
    ``job``, run from ``launch_dir`` (the folder ``igm_run`` was started in),
    since a worker of a running cluster starts in the folder the cluster was
    started from and the experiment files, inputs and ``multirun/`` are found
    relative to the launch folder."""
    import platform

    if not os.path.isdir(launch_dir):
        raise FileNotFoundError(f"the launch folder {launch_dir} is not on Ray node "
                                f"{platform.node()} (it must be on a file system the nodes "
                                f"share)")
    here = os.getcwd()
    os.chdir(launch_dir)
    try:
        return _run_in_process(*job)
    finally:
        os.chdir(here)


def ray_failure(exc: BaseException) -> str:
    """One line for a Ray task that ended without a JobReturn: the exception
    raised in the task (Ray's ``cause``), or what Ray says happened to it
    (its worker died, its node was lost)."""
    cause = getattr(exc, "cause", None)
    error = cause if isinstance(cause, BaseException) else exc
    return "Ray task failed: " + " ".join(f"{type(error).__name__}: {error}".split())[:300]


@functools.cache
def _ray_class() -> type:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as HydraRay

    class RayLauncher(Resilient, HydraRay):
        """Hydra's Ray launcher: each task's failure kept to its job, and
        running clusters joined as documented."""

        def run_batch(self, jobs: list[Job]) -> list[JobReturn]:
            import ray

            init = ray_init_settings(OmegaConf.to_container(self.ray_cfg.init, resolve=True))
            if not ray.is_initialized():
                ray.init(**init)
            remote = ray_remote_settings(OmegaConf.to_container(self.ray_cfg.remote,
                                                                resolve=True))
            task = ray.remote(**remote)(_run_on_ray)
            launch_dir = str(self.config.hydra.runtime.cwd)
            state = Singleton.get_state()
            refs = [task.remote(launch_dir, self.hydra_context, self.config, self.task_function,
                                job.overrides, job.num, state, f"job_id_for_{job.num}")
                    for job in jobs]
            out = []
            for job, ref in zip(jobs, refs, strict=True):
                try:
                    out.append(ray.get(ref))
                except Exception as exc:  # the task or its worker failed
                    out.append(failed_return(job, ray_failure(exc)))
            return out

    RayLauncher.__module__, RayLauncher.__qualname__ = __name__, "RayLauncher"
    return RayLauncher


# -- registration --------------------------------------------------------------------


_HERE = "hydra_plugins.igm_launchers.launchers"


@dataclass
class JoblibConf(JobLibLauncherConf):
    _target_: str = f"{_HERE}.JoblibLauncher"


@dataclass
class LocalConf(LocalQueueConf):
    _target_: str = f"{_HERE}.LocalLauncher"


@dataclass
class SlurmConf(SlurmQueueConf):
    _target_: str = f"{_HERE}.SlurmLauncher"


try:  # the ray extra
    from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf
except ImportError:
    RayLauncherConf = None
else:
    @dataclass
    class RayConf(RayLauncherConf):  # type: ignore[valid-type, misc]
        _target_: str = f"{_HERE}.RayLauncher"


def register() -> None:
    """Put these launchers in Hydra's ConfigStore under Hydra's names, after
    Hydra has registered its own plugins (so ours stay)."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # Hydra scans its plugins (and stores their configs), now
    confs = {"basic": (BasicLauncher, BasicLauncherConf), "joblib": (JoblibLauncher, JoblibConf),
             "submitit_local": (LocalLauncher, LocalConf),
             "submitit_slurm": (SlurmLauncher, SlurmConf)}
    if RayLauncherConf is not None:
        confs["ray"] = (_ray_class(), RayConf)
    for name, (launcher, conf) in confs.items():
        plugins.register(launcher)  # an editable install hides it from Hydra's scan
        ConfigStore.instance().store(group="hydra/launcher", name=name, node=conf,
                                     provider="igm-core")

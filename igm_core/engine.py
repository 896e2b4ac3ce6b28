"""The time loop: input stage, process stage, output stage. No Hydra here.

``run`` takes the selected plugins with their parameters and a
:class:`RunContext`, and returns the final State and a :class:`RunResult`.
It can be called from a notebook or a test as well as from ``igm_run``.

The kernel keeps each process's and output's memory (what its initialize
hook returned), hands it to that plugin's later hooks, and calls its
``close()`` (when it has one) as the run ends, completed or not. After each
process hook it checks the fields that process set for NaN and Inf. It writes
checkpoints (``core.checkpoint``: every N simulated years, every M minutes
of wall time, at the end; and whenever a signal asks, see
:mod:`igm_core.interrupts`) and continues a run from one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igm_core import checkpoint as ckpt
from igm_core import interrupts
from igm_core.config import CheckpointParams
from igm_core.context import RunContext
from igm_core.errors import IgmError, PluginError, PluginRuntimeError, RunInterrupted
from igm_core.observers import Progress, Timer
from igm_core.plugins import STAGES, LoadedPlugin, PluginEntry, PluginSet
from igm_core.quiet import start_tensorflow
from igm_core.state import State

log = logging.getLogger("igm")


@dataclass
class RunResult:
    """What a run did: status, wall time of this attempt (s), steps, simulated
    span (yr), ice volume (km3) and area (km2) at start and end, the volume
    series at save times, per-plugin timings, the plugins with their
    distributions, the error line when it failed or was interrupted, the
    checkpoint it continued from and the last one it wrote, and the plugins'
    reports (label -> what their memory's ``summary()`` returned)."""

    status: str = "running"
    wall_time_s: float = 0.0
    steps: int = 0
    t_start: float = math.nan
    t_end: float = math.nan
    volume_start_km3: float = math.nan
    volume_km3: float = math.nan
    area_km2: float = math.nan
    series: dict[str, list[float]] = field(
        default_factory=lambda: {"t": [], "volume_km3": [], "area_km2": []})
    timings: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    restarted_from: str | None = None
    checkpoint: str | None = None
    reports: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return dataclasses.asdict(self)

    def history(self) -> dict[str, Any]:
        """What a checkpoint keeps of the result: start figures and series."""
        return {"t_start": self.t_start, "volume_start_km3": self.volume_start_km3,
                "series": self.series}


class CheckpointSchedule:
    """When the next scheduled checkpoint is due: every ``every_years``
    simulated years from the first time of the loop, every ``every_minutes``
    of wall time."""

    def __init__(self, params: CheckpointParams, t0: float) -> None:
        self.p = params
        self.t0 = t0
        self.next_t = self._after(t0)
        self.next_wall = self._wall_after(time.monotonic())

    def _after(self, t: float) -> float:
        every = self.p.every_years
        if every <= 0:
            return math.inf
        return self.t0 + (math.floor((t - self.t0) / every + 1e-9) + 1) * every

    def _wall_after(self, now: float) -> float:
        return now + 60.0 * self.p.every_minutes if self.p.every_minutes > 0 else math.inf

    def due(self, t: float) -> bool:
        """Whether a checkpoint is due at simulated time ``t`` (yr)."""
        return t >= self.next_t - 1e-9 * max(1.0, abs(t)) or time.monotonic() >= self.next_wall

    def written(self, t: float) -> None:
        """Start both intervals again after a checkpoint at ``t``."""
        self.next_t = self._after(t)
        self.next_wall = self._wall_after(time.monotonic())


def _when(state: State) -> str:
    """`` at t=... yr (step N)`` once the clock runs, else nothing."""
    return f" at t={state.t:g} yr (step {state.it})" if math.isfinite(state.t) else ""


def check_writer(plugin: LoadedPlugin, hook: str, state: State, before: Mapping[str, Any],
                 writers: Mapping[str, str]) -> None:
    """Raise PluginRuntimeError when ``plugin`` gave a new value, in
    ``hook``, to a field another process writes (``writers``: field name ->
    process label)."""
    for name, value in state.fields.items():
        owner = writers.get(name)
        if owner is not None and owner != plugin.entry.label and before.get(name) is not value:
            where = _when(state)
            raise PluginRuntimeError(
                f"{plugin.entry.label} wrote field '{name}' in {hook}{where}, which {owner} "
                f"writes: hand {owner} a rate instead (a field declared with "
                f"igm_core.Field(..., rate_of='{name}'))")


def check_finite(plugin: LoadedPlugin, hook: str, state: State,
                 before: Mapping[str, Any]) -> None:
    """Raise PluginRuntimeError naming ``plugin`` and the field when a field
    it set in ``hook`` (a new value, compared with ``before``) holds NaN or
    Inf. One reduction per field, run eagerly (nothing to trace, whatever
    fields a plugin sets), and one device sync per call: 0.05-0.2 ms for
    one to four fields of 90 x 110 cells on 2 CPU cores."""
    import tensorflow as tf

    changed = {name: tf.convert_to_tensor(value) for name, value in state.fields.items()
               if before.get(name) is not value and _is_float(value)}
    if not changed:
        return
    values = list(changed.values())
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in values]).numpy()
    for (name, value), ok in zip(changed.items(), finite, strict=True):
        if not ok:
            bad = int(tf.math.count_nonzero(~tf.math.is_finite(value)))
            where = _when(state)
            raise PluginRuntimeError(f"{plugin.entry.label} wrote NaN or Inf into field "
                                     f"'{name}' ({bad} of {tf.size(value)} values) in "
                                     f"{hook}{where}")


def _is_float(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)  # a TensorFlow or NumPy dtype
    return bool(getattr(dtype, "is_floating", False) or getattr(dtype, "kind", "") == "f")


class _Run:
    """One run's plugins, State, plugin memories and result."""

    def __init__(self, plugins: PluginSet, ctx: RunContext, result: RunResult,
                 checkpoints: CheckpointParams, signals: interrupts.Interrupts) -> None:
        self.plugins = plugins
        self.signals = signals
        self.ctx = ctx
        self.result = result
        self.checkpoints = checkpoints
        self.state = State()
        self.memories: dict[str, Any] = {}
        self.labels = {p.key: p.entry.label for s in STAGES for p in plugins.stages[s]}
        self.writers = plugins.writers()

    def _call(self, plugin: LoadedPlugin, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's hook; anything it raises (SystemExit and a
        KeyboardInterrupt of its own included) becomes one line naming it;
        a process's new values of fields are checked for NaN and Inf."""
        state = self.state
        before = dict(state.fields)
        try:
            returned = self.plugins.call(plugin, hook, state=state, **kwargs)
        except IgmError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            if isinstance(exc, KeyboardInterrupt) and not self.signals.raised_without_sigint():
                raise  # a real Ctrl-C
            where = _when(state)
            if isinstance(exc, SystemExit):
                message = f"{plugin.entry.label} called sys.exit({exc.code}) in {hook}{where}"
            else:
                message = (f"{plugin.entry.label} failed in {hook}{where}: "
                           f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise PluginRuntimeError(message) from exc
        if plugin.entry.stage == "processes":
            check_writer(plugin, hook, state, before, self.writers)
            check_finite(plugin, hook, state, before)
        return returned

    def initialize(self, stage: str, hook: str) -> None:
        for p in self.plugins.stages[stage]:
            returned = self._call(p, hook, run=self.ctx)
            if stage != "inputs":
                memory = returned[0] if returned else None
                ckpt.check_memory(p.entry.label, memory)
                self.memories[p.key] = memory

    def update(self, stage: str, hook: str, **kwargs: Any) -> None:
        for p in self.plugins.stages[stage]:
            self._call(p, hook, memory=self.memories.get(p.key), **kwargs)

    def collect_reports(self) -> None:
        """Put what each memory's ``summary()`` returns (a JSON-ready dict,
        or None) into the result's ``reports``; a failure is a warning."""
        for key, memory in self.memories.items():
            summary = getattr(memory, "summary", None)
            if not callable(summary):
                continue
            try:
                report = summary()
            except Exception as exc:
                log.warning("%s: summary() of its memory failed: %s: %s", self.labels[key],
                            type(exc).__name__, exc)
                continue
            if report is not None:
                self.result.reports[self.labels[key]] = report

    def close_memories(self) -> None:
        """Call ``close()`` on every memory that has one, whatever the run's
        status (a writer removes its working files); a failure is a warning."""
        for key, memory in self.memories.items():
            close = getattr(memory, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    log.warning("%s: close() of its memory failed: %s: %s", self.labels[key],
                                type(exc).__name__, exc)

    def restore_memories(self, stage: str, saved: ckpt.Checkpoint) -> None:
        for p in self.plugins.stages[stage]:
            if p.key not in saved.memories:
                raise PluginError(f"checkpoint {saved.path} holds no state of {p.entry.label}")
            ckpt.restore_memory(p.entry.label, self.memories[p.key], saved.memories[p.key])

    def fingerprint(self) -> dict[str, Any]:
        return ckpt.fingerprint(self.state, self.ctx.plugins)

    def write_checkpoint(self, reason: str) -> str:
        """Write a checkpoint of the State and every memory; keep the newest
        ``keep``; returns its path."""
        start = time.perf_counter()
        path = ckpt.save(ckpt.file_for(self.ctx.output_dir, self.state.it), self.state,
                         self.memories, self.labels, self.result.history(), self.fingerprint())
        ckpt.prune(self.ctx.output_dir, self.checkpoints.keep)
        self.result.checkpoint = str(path)
        log.info("checkpoint (%s) at t=%g yr (step %d): %s, %.1f MB in %.2f s", reason,
                 float(self.state.t), self.state.it, path, path.stat().st_size / 1e6,
                 time.perf_counter() - start)
        return str(path)


def _stop_on_ctrl_c(signals: interrupts.Interrupts) -> None:
    """Raise KeyboardInterrupt when a Ctrl-C was received: one that landed
    in a library which caught it (TensorFlow, loading a module or a compiled
    function) and went on would otherwise be lost."""
    if signals.sigint_received:
        raise KeyboardInterrupt


def _ctrl_c_error(state: State) -> str:
    """The run summary's error of a run stopped by Ctrl-C."""
    return f"interrupted by Ctrl-C (SIGINT) at t={float(state.t):g} yr"


def run(selection: Mapping[str, list[tuple[PluginEntry, Any]]], ctx: RunContext,
        progress: str = "auto", observers: Iterable[Any] = (),
        result: RunResult | None = None, checkpoints: CheckpointParams | None = None,
        restart: str | Path | None = None,
        signals: interrupts.Interrupts | None = None) -> tuple[State, RunResult]:
    """Run one simulation.

    ``selection`` maps each stage to its ``(entry, params)`` pairs in
    configuration order. ``progress`` is ``auto``, ``bar``, ``log`` or
    ``off``. ``result`` (optional) is filled in place, so a caller keeps
    the partial figures when the run raises. ``checkpoints`` says when to
    write checkpoints (None: only when a signal asks); ``restart`` is a
    checkpoint file to continue from. Raises IgmError subclasses with one-line
    messages; RunInterrupted when a signal stopped the run.
    """
    wall_start = time.perf_counter()
    result = result if result is not None else RunResult()
    start_tensorflow(quiet=not log.isEnabledFor(logging.DEBUG))
    saved = ckpt.load(restart) if restart is not None else None
    timer = Timer()
    plugins = PluginSet(selection, observers=[timer, Progress(progress, ctx.multirun), *observers])
    plugins.check_fields()
    if not plugins.stages["processes"]:
        raise PluginError("no process selected: list at least 'time' in processes")
    ctx = dataclasses.replace(ctx, plugins=plugins.infos,
                              restart=saved.path if saved is not None else None)
    result.plugins = [dataclasses.asdict(info) for info in ctx.plugins]
    own_signals = signals is None
    signals = interrupts.Interrupts() if signals is None else signals
    job = _Run(plugins, ctx, result,
               checkpoints or CheckpointParams(every_minutes=0.0, at_end=False), signals)
    state = job.state
    for stage in STAGES:
        for p in plugins.stages[stage]:
            timer.names[id(p.params)] = p.key
            state.declare_all(p.provides(), provider=p.entry.label)

    status = "failed"
    try:
        with signals if own_signals else contextlib.nullcontext():
            job.initialize("inputs", "igm_input_initialize")
            if state.grid is None:
                raise PluginError("no input plugin set the grid: select an input such as 'local'")
            if saved is not None:
                saved.check_fits(job.fingerprint())
                saved.restore_state(state)
            job.initialize("processes", "igm_process_initialize")
            if state.t_end is None or not math.isfinite(state.t):
                raise PluginError("no process sets the clock (state.t, state.t_end): add 'time' "
                                  "to processes")
            if saved is not None:
                saved.restore_state(state)
                job.restore_memories("processes", saved)
                result.__dict__.update(saved.result)
                result.restarted_from = str(saved.path)
                log.info("continuing from %s at t=%g yr (step %d)", saved.path,
                         float(state.t), state.it)
            else:
                result.t_start = float(state.t)
                result.volume_start_km3 = state.ice_volume()
            job.initialize("outputs", "igm_output_initialize")
            if saved is not None:
                job.restore_memories("outputs", saved)
            plugins.broadcast("igm_run_begin", state=state, run=ctx)
            schedule = CheckpointSchedule(job.checkpoints, float(state.t))
            signals.looping = True
            while state.t < state.t_end:
                _stop_on_ctrl_c(signals)
                job.update("processes", "igm_process_update")
                job.update("outputs", "igm_output_update", run=ctx)
                if state.saveresult:
                    result.series["t"].append(float(state.t))
                    result.series["volume_km3"].append(state.ice_volume())
                    result.series["area_km2"].append(state.ice_area())
                state.it += 1
                plugins.broadcast("igm_step_end", state=state, run=ctx)
                stop = signals.stop_signal
                if signals.checkpoint_requested or schedule.due(float(state.t)):
                    reason = (f"on {interrupts.name(signals.received[0])}"
                              if signals.received else "scheduled")
                    path = job.write_checkpoint(reason)
                    signals.clear()
                    schedule.written(float(state.t))
                    if stop is not None:
                        raise RunInterrupted(
                            f"interrupted by {interrupts.name(stop)} at t={float(state.t):g} yr "
                            f"(step {state.it}); checkpoint {path}", stop, path)
            _stop_on_ctrl_c(signals)
            if job.checkpoints.at_end:
                job.write_checkpoint("end of run")
            job.update("processes", "igm_process_finalize", run=ctx)
            job.update("outputs", "igm_output_finalize", run=ctx)
            status = "completed"
    except RunInterrupted as exc:
        status = "interrupted"
        result.error = str(exc)
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        result.error = _ctrl_c_error(state)
        raise
    except Exception as exc:
        if signals.sigint_received:
            # a Ctrl-C that lands inside a library (TensorFlow importing a module)
            # can surface as another error from its half-done work: the user
            # interrupted the run, it did not fail
            status = "interrupted"
            result.error = _ctrl_c_error(state)
            raise KeyboardInterrupt from exc
        result.error = str(exc) if isinstance(exc, IgmError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        plugins.broadcast("igm_run_end", state=state, run=ctx, status=status)
        job.collect_reports()
        job.close_memories()
        result.status = status
        result.steps = state.it
        result.t_end = float(state.t)
        result.volume_km3 = state.ice_volume()
        result.area_km2 = state.ice_area()
        result.timings = timer.rows()
        result.wall_time_s = time.perf_counter() - wall_start
        log.debug("per-plugin timings:\n%s", timer.table())
    return state, result

"""The time loop: input stage, process stage, output stage. No Hydra here.

``run`` takes the selected plugins with their parameters and a
:class:`RunContext`, and returns the final State and a :class:`RunResult`.
It can be called from a notebook or a test as well as from ``igm_run``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from igm_core.context import RunContext
from igm_core.errors import IgmError, PluginError, PluginRuntimeError
from igm_core.observers import Progress, Timer
from igm_core.plugins import STAGES, LoadedPlugin, PluginEntry, PluginSet
from igm_core.quiet import start_tensorflow
from igm_core.state import State

log = logging.getLogger("igm")


@dataclass
class RunResult:
    """What a run did: status, wall time (s), steps, simulated span (yr),
    ice volume (km3) and area (km2) at start and end, the volume series at
    save times, per-plugin timings, the plugins with their distributions,
    and the error line when it failed."""

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return dataclasses.asdict(self)


def _guarded(plugin: LoadedPlugin, hook: str, state: State, call: Any, **kwargs: Any) -> None:
    try:
        call(plugin, hook, state=state, **kwargs)
    except IgmError:
        raise
    except Exception as exc:
        where = f" at t={state.t:g} yr (step {state.it})" if math.isfinite(state.t) else ""
        raise PluginRuntimeError(
            f"{plugin.entry.label} failed in {hook}{where}: {type(exc).__name__}: {exc}"
        ) from exc


def run(selection: Mapping[str, list[tuple[PluginEntry, Any]]], ctx: RunContext,
        progress: str = "auto", observers: Iterable[Any] = (),
        result: RunResult | None = None) -> tuple[State, RunResult]:
    """Run one simulation.

    ``selection`` maps each stage to its ``(entry, params)`` pairs in
    configuration order. ``progress`` is ``auto``, ``bar``, ``log`` or
    ``off``. ``result`` (optional) is filled in place, so a caller keeps
    the partial figures when the run raises. Raises IgmError subclasses with
    one-line messages.
    """
    wall_start = time.perf_counter()
    result = result if result is not None else RunResult()
    start_tensorflow(quiet=not log.isEnabledFor(logging.DEBUG))
    timer = Timer()
    plugins = PluginSet(selection, observers=[timer, Progress(progress, ctx.multirun), *observers])
    plugins.check_fields()
    if not plugins.stages["processes"]:
        raise PluginError("no process selected: list at least 'time' in processes")
    ctx = dataclasses.replace(ctx, plugins=plugins.infos)
    result.plugins = [dataclasses.asdict(info) for info in ctx.plugins]
    state = State()
    for stage in STAGES:
        for p in plugins.stages[stage]:
            timer.names[id(p.params)] = p.key
            state.declare_all(p.provides(), provider=p.entry.label)

    def stage_call(stage: str, hook: str, **kwargs: Any) -> None:
        for p in plugins.stages[stage]:
            _guarded(p, hook, state, plugins.call, **kwargs)

    status = "failed"
    try:
        stage_call("inputs", "igm_input_initialize", run=ctx)
        if state.grid is None:
            raise PluginError("no input plugin set the grid: select an input such as 'local'")
        stage_call("processes", "igm_process_initialize", run=ctx)
        if state.t_end is None or not math.isfinite(state.t):
            raise PluginError("no process sets the clock (state.t, state.t_end): add 'time' "
                              "to processes")
        result.t_start = float(state.t)
        result.volume_start_km3 = state.ice_volume()
        stage_call("outputs", "igm_output_initialize", run=ctx)
        plugins.broadcast("igm_run_begin", state=state, run=ctx)
        while state.t < state.t_end:
            stage_call("processes", "igm_process_update")
            stage_call("outputs", "igm_output_update", run=ctx)
            if state.saveresult:
                result.series["t"].append(float(state.t))
                result.series["volume_km3"].append(state.ice_volume())
                result.series["area_km2"].append(state.ice_area())
            state.it += 1
            plugins.broadcast("igm_step_end", state=state, run=ctx)
        stage_call("processes", "igm_process_finalize", run=ctx)
        stage_call("outputs", "igm_output_finalize", run=ctx)
        status = "completed"
    except IgmError as exc:
        result.error = str(exc)
        raise
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        plugins.broadcast("igm_run_end", state=state, run=ctx, status=status)
        result.status = status
        result.steps = state.it
        result.t_end = float(state.t)
        result.volume_km3 = state.ice_volume()
        result.area_km2 = state.ice_area()
        result.timings = timer.rows()
        result.wall_time_s = time.perf_counter() - wall_start
        log.debug("per-plugin timings:\n%s", timer.table())
    return state, result

"""The plugin contract: the hooks a glacier-model plugin may implement.

A plugin is a module (or object) named by an entry point in one of the
groups ``igm.inputs``, ``igm.processes`` or ``igm.outputs``. It holds a
dataclass ``Params`` with its parameters and defaults, and implementations of
the hooks below for its stage, marked with ``igm_core.hookimpl``. An
implementation may take only the arguments it uses.

Arguments common to the hooks:

``params``
    This plugin's own ``Params`` instance, built from the configuration
    (``processes.<name>.*`` for a process). Never the whole configuration.
``state``
    The :class:`igm_core.state.State`: the grid (``state.x``, ``state.y``,
    ``state.dx``, metres), gridded fields on ``(ny, nx)`` or
    ``(nz, ny, nx)`` as float32 TensorFlow tensors (metres, years, m/yr,
    MPa), and the clock ``state.t`` (yr), ``state.dt`` (yr), ``state.it``,
    ``state.t_end`` (yr) and ``state.saveresult``.
``run``
    The frozen :class:`igm_core.context.RunContext`: output folder, launch
    folder, data folder, job number, devices, plugin provenance.

Plugins are called in the order the configuration lists them, never in
pluggy's registration order. Besides hooks, a plugin module may declare
``requires`` (names of State fields it reads that another plugin must
provide) and ``provides`` (the fields it writes, as names of known fields or
:class:`igm_core.state.Field`); ``requires`` may also be a function of
``params``. The kernel checks them before the first time step. One process
writes each field: two processes providing the same field are refused, and a
process that writes another process's field stops the run. A process that
changes another's field hands it a rate instead: a field declared with
``Field(..., rate_of=name)`` (units per year), which the writer of ``name``
applies (``thk`` adds every rate of ``thk`` and budgets it).

What a process or an output keeps between steps is its own: the object its
``igm_*_initialize`` returns (its *memory*: an emulator and its optimiser,
particle arrays, output bookkeeping, a random generator). The kernel keeps
it and hands it back, as ``memory``, to that plugin's later hooks and to no
other plugin. The kernel writes it into checkpoints and restores it when a
run continues from one: the memory object provides ``state_dict()`` (a dict
of numbers, strings, lists, dicts, NumPy arrays or TensorFlow tensors and
NumPy random generators) and ``load_state_dict(d)``; a dataclass without
them is saved and restored field by field, a dict item by item. A plugin
that keeps nothing returns None; any other memory is refused when the run
starts. A memory with a ``close()`` method is closed when the run ends,
completed, interrupted or failed (remove working files there); one with a
``summary()`` method (a JSON-ready dict, or None) has it recorded under
``reports`` in ``run_summary.json`` (an ice-flow solver's convergence).

After each process hook the kernel checks every float field the process
set (a new value) for NaN and Inf, and stops the run naming the plugin and
the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from igm_core.context import RunContext
    from igm_core.state import State

PROJECT_NAME = "igm"
_hookspec = pluggy.HookspecMarker(PROJECT_NAME)

# -- input stage ---------------------------------------------------------


@_hookspec
def igm_input_initialize(params: Any, state: State, run: RunContext) -> None:
    """Build the initial State: called once, before any process, in list order.

    The first input plugin sets the grid (``state.set_grid(x, y)``, metres,
    ascending, uniform square cells) and fills 2-D fields on ``(ny, nx)``
    (e.g. ``topg``, ``thk``, ``usurf`` in m). Later input plugins may add or
    replace fields on the same grid.
    """


# -- process stage -------------------------------------------------------


@_hookspec
def igm_process_initialize(params: Any, state: State, run: RunContext) -> Any:
    """Prepare a process once, after the input stage, in list order; return
    its memory (or None).

    Reads fields from the inputs, declares and sets the fields the process
    provides (initial values), and may set the clock (``state.t``,
    ``state.t_end`` in yr). When the run continues from a checkpoint
    (``run.restart`` is set) the State already holds the checkpoint's fields
    and clock, and the kernel loads the memory's saved state after this
    hook; work that the saved state replaces (an initial training) may be
    skipped.
    """


@_hookspec
def igm_process_update(params: Any, state: State, memory: Any) -> None:
    """Advance the process by one time step: called every step, in list order.

    Reads ``state.t`` and ``state.dt`` (yr) and the fields it requires, and
    writes the fields it provides. ``memory`` is what this plugin's
    ``igm_process_initialize`` returned. The step loop runs while
    ``state.t < state.t_end``.
    """


@_hookspec
def igm_process_finalize(params: Any, state: State, run: RunContext, memory: Any) -> None:
    """Close a process once, after the last step, in list order."""


# -- output stage --------------------------------------------------------


@_hookspec
def igm_output_initialize(params: Any, state: State, run: RunContext) -> Any:
    """Prepare an output once, after the processes are initialised; return
    its memory (or None).

    Outputs write only inside ``run.output_dir`` and never change physics
    fields. When the run continues from a checkpoint, the memory's
    ``load_state_dict`` is called next: it brings the output's files back to
    the checkpoint's last save (the earlier run's files are in
    ``run.restart_dir``), so a continued run appends with no save time
    missing or repeated.
    """


@_hookspec
def igm_output_update(params: Any, state: State, run: RunContext, memory: Any) -> None:
    """Called after every step (and once at the start time); writes or shows
    results when ``state.saveresult`` is true.

    Files are written atomically (temporary name, then rename).
    """


@_hookspec
def igm_output_finalize(params: Any, state: State, run: RunContext, memory: Any) -> None:
    """Close an output once at the end of a successful run (flush files,
    make animations)."""


# -- run lifecycle (observers: progress, profiling, loggers) -------------


@_hookspec
def igm_run_begin(state: State, run: RunContext) -> None:
    """Observe the start of the time loop: called once, after every plugin
    is initialised. Takes no ``params``; must not change physics fields."""


@_hookspec
def igm_step_end(state: State, run: RunContext) -> None:
    """Observe the end of a time step (after outputs): called every step,
    with ``state.t`` (yr) and ``state.it`` already advanced."""


@_hookspec
def igm_run_end(state: State, run: RunContext, status: str) -> None:
    """Observe the end of a run: called once, ``status`` is ``"completed"``,
    ``"interrupted"`` (a signal stopped it after a checkpoint) or
    ``"failed"``."""


STAGE_HOOKS: dict[str, tuple[str, ...]] = {
    "inputs": ("igm_input_initialize",),
    "processes": (
        "igm_process_initialize",
        "igm_process_update",
        "igm_process_finalize",
    ),
    "outputs": (
        "igm_output_initialize",
        "igm_output_update",
        "igm_output_finalize",
    ),
}
"""The hooks each stage's plugins may implement."""

LIFECYCLE_HOOKS: tuple[str, ...] = ("igm_run_begin", "igm_step_end", "igm_run_end")
"""Hooks any plugin or observer may implement."""

"""Test kit for plugin authors.

Build a small State, run one plugin's hooks exactly as the kernel calls them
(contract checks included), and check the fields it declares::

    from igm_core.testing import make_state, run_process, check_declared_fields
    import igm_calving.process as calving

    def test_calving_thins_the_front(tmp_path):
        state = make_state(nx=30, ny=20, dx=100.0, thk=200.0, topg=-50.0)
        run_process(calving, state, steps=5, dt=1.0, output_dir=tmp_path)
        check_declared_fields(calving, state)

:class:`PluginRun` calls one plugin's hooks step by step and keeps its
memory (what its initialize hook returned); :func:`check_checkpoint_round_trip`
checks that a run stopped at a checkpoint and continued from it ends exactly
as the run in one piece. Subclass :class:`ProcessContract` (set ``plugin``)
to get the generic contract tests for a process plugin. With
``pytest_plugins = ["igm_core.testing"]`` the fixtures ``igm_state`` and
``igm_run_context`` are available too.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest

from igm_core.context import RunContext
from igm_core.plugins import STAGES, LoadedPlugin, PluginEntry, PluginSet
from igm_core.state import State


def make_state(nx: int = 20, ny: int = 16, dx: float = 100.0, t: float = 0.0,
               **fields: Any) -> State:
    """A State on an ``(ny, nx)`` grid of ``dx`` m cells, cell centres from 0.

    Keyword arguments become float32 TensorFlow fields: a scalar fills the
    grid, an array is taken as it is (``(ny, nx)`` or ``(nz, ny, nx)``).
    ``usurf`` defaults to ``topg + thk`` when both are given."""
    state = State()
    state.set_grid(dx * np.arange(nx), dx * np.arange(ny))
    state.t = float(t)
    if "topg" in fields and "thk" in fields and "usurf" not in fields:
        fields["usurf"] = np.broadcast_to(fields["topg"], (ny, nx)) + np.asarray(fields["thk"])
    if fields:
        import tensorflow as tf

        for name, value in fields.items():
            array = np.asarray(value, dtype="float32")
            if array.ndim == 0:
                array = np.full((ny, nx), array, dtype="float32")
            setattr(state, name, tf.constant(array))
    return state


def run_context(output_dir: str | Path, **kwargs: Any) -> RunContext:
    """A RunContext writing into ``output_dir`` (created)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("launch_dir", out)
    kwargs.setdefault("data_dir", out)
    return RunContext(output_dir=out, **kwargs)


def load_plugin(module: ModuleType, stage: str, params: Any = None) -> tuple[PluginSet,
                                                                           LoadedPlugin]:
    """Validate ``module`` as a plugin of ``stage`` the way the kernel does
    (``Params`` dataclass, hook names, signatures) and register it alone.
    ``params`` defaults to ``module.Params()``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    entry = PluginEntry(stage, module.__name__.rsplit(".", 1)[-1], module.__name__, "(test)", "0")
    params = module.Params() if params is None else params
    plugins = PluginSet({stage: [(entry, params)]})
    return plugins, plugins.stages[stage][0]


INITIALIZE = {"inputs": "igm_input_initialize", "processes": "igm_process_initialize",
              "outputs": "igm_output_initialize"}


class PluginRun:
    """One plugin's hooks called as the kernel calls them: :meth:`start`
    (initialize), :meth:`step`, :meth:`finish` (finalize). ``memory`` is
    what the initialize hook returned, handed to the later hooks.
    ``restart`` (a checkpoint file) tells the plugin it continues a run."""

    def __init__(self, module: ModuleType, stage: str, state: State, params: Any = None,
                 output_dir: str | Path | None = None, restart: Path | None = None) -> None:
        self.plugins, self.plugin = load_plugin(module, stage, params)
        self.stage = stage
        self.state = state
        state.declare_all(self.plugin.provides(), provider=self.plugin.entry.label)
        out = Path(output_dir) if output_dir is not None else Path.cwd()
        self.ctx = (run_context(out, restart=restart) if output_dir is not None
                    else RunContext(out, restart=restart))
        self.memory: Any = None

    @property
    def key(self) -> str:
        """The plugin's registration name, ``stage.name``."""
        return self.plugin.key

    def start(self) -> PluginRun:
        """Call the initialize hook; keep its memory."""
        if not math.isfinite(self.state.t):
            self.state.t = 0.0
        returned = self.plugins.call(self.plugin, INITIALIZE[self.stage], state=self.state,
                                     run=self.ctx)
        self.memory = returned[0] if returned else None
        return self

    def step(self, dt: float = 1.0) -> None:
        """One step: ``state.t`` advances by ``dt`` years (as the ``time``
        process would); a process updates, an output writes (a save)."""
        state = self.state
        state.dt = float(dt)
        state.t = float(state.t) + float(dt)
        if self.stage == "processes":
            self.plugins.call(self.plugin, "igm_process_update", state=state, memory=self.memory)
        else:
            state.saveresult = True
            self.plugins.call(self.plugin, "igm_output_update", state=state, run=self.ctx,
                              memory=self.memory)
        state.it += 1

    def finish(self) -> State:
        """Call the finalize hook, then close the memory (when it has a
        ``close()``) as the kernel does at the end of a run; returns the
        State."""
        hook = "igm_process_finalize" if self.stage == "processes" else "igm_output_finalize"
        self.plugins.call(self.plugin, hook, state=self.state, run=self.ctx, memory=self.memory)
        self.close()
        return self.state

    def close(self) -> None:
        """Close the memory as the kernel does when a run ends, completed or
        not (call it yourself after a simulated failure)."""
        close = getattr(self.memory, "close", None)
        if callable(close):
            close()


def run_process(module: ModuleType, state: State, params: Any = None, steps: int = 1,
                dt: float = 1.0, output_dir: str | Path | None = None) -> State:
    """Run a process plugin: initialize, ``steps`` updates of ``dt`` years
    (the kit advances ``state.t`` and ``state.it``, as the ``time`` process
    would), finalize. Returns the State (use :class:`PluginRun` to see the
    plugin's memory)."""
    run = PluginRun(module, "processes", state, params, output_dir).start()
    for _ in range(steps):
        run.step(dt)
    return run.finish()


def save_checkpoint(run: PluginRun, folder: str | Path) -> Path:
    """Write a checkpoint of ``run``'s State and memory into
    ``folder/checkpoints``, as the kernel does; returns the file."""
    from igm_core import checkpoint

    state = run.state
    if state.t_end is None:
        state.t_end = math.inf
    return checkpoint.save(checkpoint.file_for(Path(folder), state.it), state,
                           {run.key: run.memory}, {run.key: run.plugin.entry.label}, {},
                           checkpoint.fingerprint(state, ()))


def continue_from(path: Path, module: ModuleType, stage: str, state: State, params: Any = None,
                  output_dir: str | Path | None = None) -> PluginRun:
    """A :class:`PluginRun` continuing from the checkpoint ``path`` as the
    kernel does: the State takes the checkpoint's fields and clock before and
    after the initialize hook, then the memory its saved state."""
    from igm_core import checkpoint

    saved = checkpoint.load(path)
    saved.restore_state(state)
    run = PluginRun(module, stage, state, params, output_dir, restart=Path(path)).start()
    saved.restore_state(state)
    checkpoint.restore_memory(run.plugin.entry.label, run.memory, saved.memories[run.key])
    return run


def _assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys differ"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.random.Generator):
        assert a.bit_generator.state == b.bit_generator.state, f"{where}: generator state"
    elif hasattr(a, "shape") or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape and x.dtype == y.dtype, (
            f"{where}: {x.dtype}{x.shape} against {y.dtype}{y.shape}")
        assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), (
            f"{where}: max abs difference {np.nanmax(np.abs(x.astype(float) - y)):g}")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} against {b!r}"


def check_checkpoint_round_trip(module: ModuleType, stage: str, make: Any, tmp_path: Path,
                                params: Any = None, before: int = 2, after: int = 2,
                                dt: float = 1.0) -> None:
    """Assert that ``before + after`` steps in one piece and ``before`` steps,
    a checkpoint, and ``after`` steps continued from it in a fresh State end
    with the same fields and the same memory, bit for bit. ``make()``
    builds the initial State (called once per run)."""
    from igm_core import checkpoint

    whole = PluginRun(module, stage, make(), params, tmp_path / "whole").start()
    for _ in range(before + after):
        whole.step(dt)
    first = PluginRun(module, stage, make(), params, tmp_path / "first").start()
    for _ in range(before):
        first.step(dt)
    path = save_checkpoint(first, tmp_path / "first")
    second = continue_from(path, module, stage, make(), params, tmp_path / "second")
    for _ in range(after):
        second.step(dt)
    assert sorted(whole.state.fields) == sorted(second.state.fields)
    for name in whole.state.fields:
        _assert_same(whole.state.get(name), second.state.get(name), f"field '{name}'")
    label = whole.plugin.entry.label
    _assert_same(checkpoint.memory_state(label, whole.memory),
                 checkpoint.memory_state(label, second.memory), f"{label} memory")


def check_declared_fields(module: ModuleType, state: State, params: Any = None) -> None:
    """Assert that every field ``module`` declares in ``provides`` is in the
    State, finite, and shaped as its dims say (``(ny, nx)`` for 2-D); a field
    holding a dict of 1-D arrays (particles) must have arrays of one length."""
    _, plugin = load_plugin(module, _stage_of(module), params)
    ny, nx = state.grid.shape
    for field in plugin.provides():
        assert state.has(field.name), f"declared field '{field.name}' is not in the State"
        value = state.get(field.name)
        if isinstance(value, dict):  # a collection of 1-D arrays (e.g. particles)
            lengths = {np.asarray(v).shape for v in value.values()}
            assert len(lengths) <= 1, f"field '{field.name}' holds arrays of shapes {lengths}"
            for key, item in value.items():
                assert np.all(np.isfinite(np.asarray(item, dtype="float64"))), (
                    f"field '{field.name}[{key}]' has non-finite values")
            continue
        value = np.asarray(value)
        assert np.all(np.isfinite(value)), f"field '{field.name}' has non-finite values"
        if field.dims[-2:] == ("y", "x"):
            assert value.shape[-2:] == (ny, nx), (
                f"field '{field.name}' has shape {value.shape}, expected (..., {ny}, {nx})")
            assert value.ndim == len(field.dims), (
                f"field '{field.name}' has {value.ndim} dims, declared {field.dims}")


def _stage_of(module: ModuleType) -> str:
    for stage, prefix in (("inputs", "igm_input_"), ("processes", "igm_process_"),
                          ("outputs", "igm_output_")):
        if any(name.startswith(prefix) for name in dir(module)):
            return stage
    raise AssertionError(f"{module.__name__} implements no stage hook")


class ProcessContract:
    """Generic contract tests for a process plugin: subclass it in your test
    module and set ``plugin`` (the module) and, optionally, ``state_kwargs``
    (fields for :func:`make_state`)."""

    plugin: ModuleType
    state_kwargs: ClassVar[dict[str, Any]] = {"thk": 100.0, "topg": 1000.0}

    def test_params_have_defaults(self) -> None:
        params = self.plugin.Params()
        assert dataclasses.is_dataclass(params)

    def test_hooks_follow_the_contract(self) -> None:
        load_plugin(self.plugin, "processes")

    def test_declared_fields_are_written(self, tmp_path: Path) -> None:
        state = make_state(**self.state_kwargs)
        run_process(self.plugin, state, steps=2, output_dir=tmp_path)
        check_declared_fields(self.plugin, state)

    def test_checkpoint_round_trip(self, tmp_path: Path) -> None:
        check_checkpoint_round_trip(self.plugin, "processes",
                                    lambda: make_state(**self.state_kwargs), tmp_path)


@pytest.fixture
def igm_state() -> Any:
    """Factory fixture: ``igm_state(nx=..., thk=...)`` -> :func:`make_state`."""
    return make_state


@pytest.fixture
def igm_run_context(tmp_path: Path) -> RunContext:
    """A RunContext writing into pytest's ``tmp_path``."""
    return run_context(tmp_path)

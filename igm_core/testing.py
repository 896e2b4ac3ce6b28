"""Test kit for plugin authors.

Build a small State, run one plugin's hooks exactly as the kernel calls them
(contract checks included), and check the fields it declares::

    from igm_core.testing import make_state, run_process, check_declared_fields
    import igm_calving.process as calving

    def test_calving_thins_the_front(tmp_path):
        state = make_state(nx=30, ny=20, dx=100.0, thk=200.0, topg=-50.0)
        run_process(calving, state, steps=5, dt=1.0, output_dir=tmp_path)
        check_declared_fields(calving, state)

Subclass :class:`ProcessContract` (set ``plugin``) to get the generic contract
tests for a process plugin. With ``pytest_plugins = ["igm_core.testing"]``
the fixtures ``igm_state`` and ``igm_run_context`` are available too.
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


def run_process(module: ModuleType, state: State, params: Any = None, steps: int = 1,
                dt: float = 1.0, output_dir: str | Path | None = None) -> State:
    """Run a process plugin: initialize, ``steps`` updates of ``dt`` years
    (the kit advances ``state.t`` and ``state.it``, as the ``time`` process
    would), finalize. Returns the State."""
    plugins, plugin = load_plugin(module, "processes", params)
    state.declare_all(plugin.provides(), provider=plugin.entry.label)
    ctx = run_context(output_dir) if output_dir is not None else RunContext(Path.cwd())
    if not math.isfinite(state.t):
        state.t = 0.0
    plugins.call(plugin, "igm_process_initialize", state=state, run=ctx)
    for _ in range(steps):
        state.dt = float(dt)
        state.t = float(state.t) + float(dt)
        plugins.call(plugin, "igm_process_update", state=state)
        state.it += 1
    plugins.call(plugin, "igm_process_finalize", state=state, run=ctx)
    return state


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


@pytest.fixture
def igm_state() -> Any:
    """Factory fixture: ``igm_state(nx=..., thk=...)`` -> :func:`make_state`."""
    return make_state


@pytest.fixture
def igm_run_context(tmp_path: Path) -> RunContext:
    """A RunContext writing into pytest's ``tmp_path``."""
    return run_context(tmp_path)

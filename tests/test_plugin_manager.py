"""The plugin manager: discovery, order, duplicates, validation, fields."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import textwrap
import types
from pathlib import Path

import pytest
from conftest import write_fake_dist

import igm_plugins
from igm_core import Field, hookimpl
from igm_core.errors import PluginError
from igm_core.plugins import (
    PluginEntry,
    PluginSet,
    discover,
    format_listing,
    unknown_plugin_message,
)
from igm_core.testing import make_state, run_context


def make_module(name: str, source: str) -> types.ModuleType:
    """Register a plugin module built from source under ``name``."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(textwrap.dedent(source), module.__dict__)
    return module


def entry(stage: str, name: str, module: str) -> PluginEntry:
    return PluginEntry(stage, name, module, "test-dist", "1.0")


RECORDER = """
from dataclasses import dataclass
from igm_core import hookimpl
CALLS = []

@dataclass
class Params:
    label: str = "{label}"

@hookimpl
def igm_process_update(params, state):
    CALLS.append(params.label)
"""


def test_processes_are_called_in_config_order_not_registration_order():
    for label in "abc":
        make_module(f"_order_{label}", RECORDER.format(label=label))
    calls: list[str] = []
    for label in "abc":
        sys.modules[f"_order_{label}"].CALLS = calls
    order = ["c", "a", "b"]
    selection = {"processes": [(entry("processes", n, f"_order_{n}"),
                                sys.modules[f"_order_{n}"].Params()) for n in order]}
    plugins = PluginSet(selection)
    state = make_state()
    for _ in range(2):
        for p in plugins.stages["processes"]:
            plugins.call(p, "igm_process_update", state=state, memory=None)
    assert calls == order * 2


HOOK_PLUGIN = """
from dataclasses import dataclass
from igm_core import hookimpl

@dataclass
class Params:
    pass

{decorator}
def {hook}({args}):
    pass
"""

BAD_HOOKS = {
    "unknown name": ("@hookimpl", "igm_process_updte", "params, state",
                     r"unknown hook 'igm_process_updte' \(did you mean 'igm_process_update'\?\)"),
    "wrong signature": ("@hookimpl", "igm_process_update", "params, state, velocity",
                        r"process 'bad' \(test-dist\) breaks the hook contract: .*velocity"),
    "unmarked": ("", "igm_process_update", "params, state",
                 r"'igm_process_update' is not marked with @igm_core\.hookimpl"),
    "another stage": ("@hookimpl", "igm_output_update", "params, state, run",
                      "implements 'igm_output_update', a hook of another stage"),
    "tryfirst": ("@hookimpl(tryfirst=True)", "igm_process_update", "params, state",
                 "tryfirst/trylast"),
}


@pytest.mark.parametrize("case", sorted(BAD_HOOKS))
def test_bad_hook_implementation_is_refused(case):
    decorator, hook, args, message = BAD_HOOKS[case]
    name = "_bad_hook_" + case.replace(" ", "_")
    make_module(name, HOOK_PLUGIN.format(decorator=decorator, hook=hook, args=args))
    with pytest.raises(PluginError, match=message):
        PluginSet({"processes": [(entry("processes", "bad", name), None)]})


def test_plugin_without_params_dataclass_is_refused():
    make_module("_no_params", """
        from dataclasses import dataclass
        from igm_core import hookimpl
        @hookimpl
        def igm_process_update(state):
            pass
    """)
    with pytest.raises(PluginError, match="has no dataclass 'Params'"):
        PluginSet({"processes": [(entry("processes", "np", "_no_params"), None)]})


def test_import_failure_names_plugin_distribution_and_error():
    with pytest.raises(PluginError, match=r"process 'ghost' \(distribution test-dist 1.0\) "
                                          r"failed to import '_no_such_module_x'.*"
                                          "ModuleNotFoundError"):
        PluginSet({"processes": [(entry("processes", "ghost", "_no_such_module_x"), None)]})


FIELD_PLUGIN = """
from dataclasses import dataclass
from igm_core import Field, hookimpl
requires = {requires}
provides = {provides}
@dataclass
class Params:
    pass
@hookimpl
def igm_process_update(state):
    pass
"""


def test_field_needed_from_a_later_plugin_is_reported_before_step_one():
    make_module("_needs_ubar", FIELD_PLUGIN.format(requires="('ubar',)", provides="()"))
    make_module("_gives_ubar", FIELD_PLUGIN.format(requires="()", provides="('ubar',)"))
    plugins = PluginSet({"processes": [
        (entry("processes", "consumer", "_needs_ubar"), None),
        (entry("processes", "producer", "_gives_ubar"), None)]})
    with pytest.raises(PluginError, match="process 'consumer' needs field 'ubar', provided by "
                                          "process 'producer', which must come before it"):
        plugins.check_fields()
    plugins = PluginSet({"processes": [
        (entry("processes", "producer", "_gives_ubar"), None),
        (entry("processes", "consumer", "_needs_ubar"), None)]})
    plugins.check_fields()


def test_field_nobody_provides_is_reported():
    make_module("_needs_w", FIELD_PLUGIN.format(requires="('W',)", provides="()"))
    plugins = PluginSet({"processes": [(entry("processes", "lonely", "_needs_w"), None)]})
    with pytest.raises(PluginError, match="process 'lonely' needs field 'W', which no selected "
                                          "plugin provides"):
        plugins.check_fields()


def test_timing_wrapper_sees_each_plugin(tmp_path):
    from igm_core.observers import Timer

    make_module("_timed", RECORDER.format(label="t"))
    sys.modules["_timed"].CALLS = []
    params = sys.modules["_timed"].Params()
    timer = Timer()
    plugins = PluginSet({"processes": [(entry("processes", "timed", "_timed"), params)]},
                        observers=[timer])
    timer.names[id(params)] = "processes.timed"
    for _ in range(3):
        plugins.call(plugins.stages["processes"][0], "igm_process_update", state=make_state(),
                     memory=None)
    (row,) = timer.rows()
    assert (row["plugin"], row["hook"], row["calls"]) == ("processes.timed", "update", 3)


def test_discover_keeps_a_name_claimed_by_two_distributions_as_a_clash(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_fake_dist(site, "igm-clash", "2.0", {"igm.processes": {"time": "igm_clash.time"}},
                    {"igm_clash.time": "X = 1\n"})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    found = discover()  # the other plugins stay usable
    assert not found["processes"]["thk"].clash
    with pytest.raises(PluginError) as err:
        found["processes"]["time"].load()
    assert str(err.value) == (
        "two distributions claim process 'time' (group igm.processes): igm-clash 2.0 "
        "(igm_clash.time) and igm-core 0.1.0 (igm_plugins.processes.time); uninstall one")
    assert f"CLASH: {err.value}" in format_listing(found)


def test_same_name_in_two_stages_is_fine():
    found = discover()
    assert "local" in found["inputs"] and "local" in found["outputs"]


def test_unknown_plugin_message_suggests_and_lists():
    msg = unknown_plugin_message("processes", "tmie", ["time", "thk", "iceflow"])
    assert msg == ("unknown process plugin 'tmie' (did you mean 'time'?); installed processes: "
                   "iceflow, thk, time")


def test_every_builtin_plugin_module_is_reachable_through_entry_points():
    found = discover()
    declared = {e.value for stage in found.values() for e in stage.values()
                if e.distribution == "igm-core"}
    modules = set()
    for stage in ("inputs", "processes", "outputs"):
        package = importlib.import_module(f"igm_plugins.{stage}")
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                modules.add(f"igm_plugins.{stage}.{info.name}")
    assert modules and modules == declared
    assert Path(igm_plugins.__file__).parent.name in ("plugins", "igm_plugins")


def test_kit_runs_a_process_and_checks_its_fields(tmp_path):
    from igm_core.testing import check_declared_fields, run_process

    module = make_module("_thin", """
        from dataclasses import dataclass
        from igm_core import Field, hookimpl
        requires = ("thk",)
        provides = (Field("thinning", "m yr-1", "thinning rate"), "thk")
        @dataclass
        class Params:
            rate: float = 2.0  # m/yr
        @hookimpl
        def igm_process_initialize(params, state):
            import tensorflow as tf
            state.thinning = tf.fill(state.thk.shape, params.rate)
        @hookimpl
        def igm_process_update(params, state):
            import tensorflow as tf
            state.thk = tf.maximum(state.thk - params.rate * state.dt, 0.0)
    """)
    state = make_state(thk=10.0)
    run_process(module, state, steps=3, dt=1.5, output_dir=tmp_path)
    assert state.t == pytest.approx(4.5) and state.it == 3
    assert float(state.thk[0, 0]) == pytest.approx(1.0)
    check_declared_fields(module, state)
    assert run_context(tmp_path).output_dir == tmp_path


def test_hookimpl_is_exported():
    assert callable(hookimpl) and Field("a", "m", "a").dims == ("y", "x")


def test_kit_checks_a_dict_field(tmp_path):
    from igm_core.testing import check_declared_fields

    module = make_module("_bag", FIELD_PLUGIN.format(
        requires="()", provides='(Field("bag", "1", "a dict of 1-D arrays"),)'))
    state = make_state()
    state.bag = {"x": [1.0, 2.0], "y": [3.0, 4.0]}
    check_declared_fields(module, state)
    state.bag = {"x": [1.0, 2.0], "y": [3.0]}
    with pytest.raises(AssertionError, match="holds arrays of shapes"):
        check_declared_fields(module, state)

"""The engine and the core keys' error paths."""

from __future__ import annotations

import pytest
from conftest import run_igm

from igm_core import engine
from igm_core.errors import PluginError
from igm_core.plugins import discover
from igm_core.testing import run_context
from igm_plugins.inputs import local
from igm_plugins.processes import time as clock


def test_run_without_an_input_names_the_missing_grid(tmp_path):
    time_entry = discover()["processes"]["time"]
    result = engine.RunResult()
    with pytest.raises(PluginError, match="no input plugin set the grid"):
        engine.run({"processes": [(time_entry, clock.Params())]}, run_context(tmp_path),
                   progress="off", result=result)
    assert result.status == "failed" and "no input plugin" in result.error


def test_run_without_a_process_is_refused(tmp_path, tiny_input):
    local_entry = discover()["inputs"]["local"]
    with pytest.raises(PluginError, match="no process selected: list at least 'time'"):
        engine.run({"inputs": [(local_entry, local.Params(filename=str(tiny_input)))]},
                   run_context(tmp_path), progress="off")


@pytest.mark.parametrize(("override", "message"), [
    ("core.objective=speed", "in override 'core.objective=speed': Invalid value 'speed', "
                             "expected one of [volume, area, volume_change, "
                             "volume_change_misfit] (key 'core.objective')\n"),
    ("core.progress=sometimes", "in override 'core.progress=sometimes': Invalid value "
                                "'sometimes', expected one of [auto, bar, log, off] (key "
                                "'core.progress')\n"),
    ("core.logging_level=LOUD", "core.logging_level: unknown level 'LOUD' (expected DEBUG, "
                                "INFO, WARNING, ERROR, CRITICAL in any case, or a number from 0 "
                                "to 50 such as 30)"),
    ("processes.time.cfl=20", "processes.time.cfl must be in (0, 1] (the explicit transport is "
                              "unstable above 1), got 20.0"),
])
def test_bad_core_values_are_one_line_errors(tiny_input, override, message):
    proc = run_igm(["inputs=[local]", "processes=[time]", "processes.time.end=2001",
                    override], tiny_input.parent)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "Error executing job" not in proc.stderr
    assert f"igm_run: error: {message}" in proc.stderr

"""Faults of plugins and of the machine: each is one ``igm_run: error:`` line
naming its cause, recorded in igm.log, and leaves nothing half-written."""

from __future__ import annotations

import json

import netCDF4
import pytest
from conftest import run_igm, write_fake_dist
from test_cli import BASIC, one_line_error, output_dirs

from igm_plugins._netcdf import years as netcdf_years

PLUGIN_HEAD = """
from dataclasses import dataclass
import numpy as np
from igm_core import hookimpl

@dataclass
class Params:
    pass
"""

MELTER = PLUGIN_HEAD + """
@hookimpl
def igm_process_update(state):
    if state.it == 1:  # a third-party melt that divides by zero in one cell
        thk = state.thk.numpy()
        thk[3, 4] = np.nan
        state.thk = thk
"""

CTRL_C = PLUGIN_HEAD + """
@hookimpl
def igm_process_update(state):
    raise KeyboardInterrupt
"""

# a Ctrl-C that lands in a library which swallows it and goes on as if
# nothing happened
CTRL_C_SWALLOWED = PLUGIN_HEAD + """
import os
import signal
import time

@hookimpl
def igm_process_update(state):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass
"""

# the same, then failing on its half-done work (as TensorFlow did once,
# importing a module lazily)
CTRL_C_IN_A_LIBRARY = CTRL_C_SWALLOWED + """\
    raise AttributeError("'list' object has no attribute '_type_spec'")
"""

SUMMARY_BREAKER = PLUGIN_HEAD + """
import os

@hookimpl
def igm_process_finalize(run):
    # the final run_summary.json cannot be written (as on a full disk)
    path = run.output_dir / "run_summary.json"
    os.remove(path)
    os.makedirs(path / "blocked")
"""


def fake_plugin(tmp_path, name: str, source: str) -> dict[str, str]:
    site = write_fake_dist(tmp_path / "site", f"igm-{name}", "1.0",
                           {"igm.processes": {name: f"igm_{name}.plugin"}},
                           {f"igm_{name}.plugin": source})
    return {"PYTHONPATH": str(site)}


def test_nan_written_by_a_plugin_names_it_and_the_field(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[time,melter]", "outputs=[local]"], cwd,
                   env=fake_plugin(tmp_path, "melter", MELTER))
    line = one_line_error(proc)
    assert line == ("igm_run: error: process 'melter' wrote NaN or Inf into field 'thk' (1 of 168 "
                    "values) in igm_process_update at t=2001 yr (step 1)")
    [run_dir] = output_dirs(cwd)
    assert line in (run_dir / "igm.log").read_text()
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == line.removeprefix(
        "igm_run: error: ")
    # the save before the failure is complete; the working file is gone
    with netCDF4.Dataset(run_dir / "output.nc") as ds:
        assert list(netcdf_years(ds)) == [2000.0]
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == [".hydra"]


def test_a_plugin_raising_keyboardinterrupt_is_one_error_line(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[time,ctrlc]"], cwd,
                   env=fake_plugin(tmp_path, "ctrlc", CTRL_C))
    assert proc.returncode == 1
    assert one_line_error(proc) == ("igm_run: error: process 'ctrlc' failed in igm_process_update "
                                    "at t=2000 yr (step 0): KeyboardInterrupt")


def interrupted_by_ctrl_c(experiment_dir, tmp_path, source: str) -> dict:
    """Run a plugin that receives a real SIGINT; assert the run ends as a
    Ctrl-C (exit 130, one line, no traceback) and return its summary."""
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[time,swallow]"], cwd,
                   env=fake_plugin(tmp_path, "swallow", source))
    assert proc.returncode == 128 + 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("igm_run:")]
    assert line.startswith("igm_run: interrupted by Ctrl-C (SIGINT)")
    [run_dir] = output_dirs(cwd)
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "interrupted"
    return summary


def test_a_ctrl_c_that_a_library_turns_into_another_error_is_an_interruption(
        experiment_dir, tmp_path):
    interrupted_by_ctrl_c(experiment_dir, tmp_path, CTRL_C_IN_A_LIBRARY)


def test_a_ctrl_c_that_a_library_swallows_still_stops_the_run(experiment_dir, tmp_path):
    summary = interrupted_by_ctrl_c(experiment_dir, tmp_path, CTRL_C_SWALLOWED)
    assert summary["steps"] == 1  # stopped after the step that caught the Ctrl-C


def test_a_summary_that_cannot_be_written_leaves_the_run_completed(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[time,breaker]"], cwd,
                   env=fake_plugin(tmp_path, "breaker", SUMMARY_BREAKER))
    assert proc.returncode == 0, proc.stderr
    assert "igm_run: error" not in proc.stderr
    [warning] = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "could not write" in ln]
    assert "run_summary.json (Is a directory): the run completed" in warning
    assert "run completed" in proc.stdout + proc.stderr


def test_a_plugin_listed_twice_is_refused(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[time,time]"], cwd))
    assert line == ("igm_run: error: processes lists 'time' 2 times: a plugin runs once per step, "
                    "list it once")


BROKEN_IMPORT = "import not_a_real_package_xyz\n"


def test_the_import_error_shows_whatever_key_is_given(experiment_dir, tmp_path):
    env = fake_plugin(tmp_path, "exploder", BROKEN_IMPORT)
    body = BASIC.replace("processes:\n", "processes:\n  exploder:\n    foo: 1\n")
    for args, text in ((["processes=[time,exploder]", "+processes.exploder.foo=1"], BASIC),
                       (["processes=[time,exploder]"], body)):
        cwd = experiment_dir("params", text)
        line = one_line_error(run_igm(["+experiment=params", *args], cwd, env=env))
        assert line.startswith("igm_run: error: process 'exploder' (distribution igm-exploder "
                               "1.0) failed to import 'igm_exploder.plugin'"), line
        assert "No module named 'not_a_real_package_xyz'" in line


def test_a_name_claimed_twice_blocks_only_the_runs_selecting_it(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-rival", "2.0",
                           {"igm.processes": {"particles": "igm_rival.particles"}},
                           {"igm_rival.particles": "X = 1\n"})
    env = {"PYTHONPATH": str(site)}
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params"], cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    listing = run_igm(["--plugins"], cwd, env=env)
    assert listing.returncode == 0, listing.stderr
    assert ("CLASH: two distributions claim process 'particles' (group igm.processes): igm-core "
            "0.1.0 (igm_plugins.processes.particles) and igm-rival 2.0 (igm_rival.particles); "
            "uninstall one") in listing.stdout
    line = one_line_error(run_igm(["+experiment=params", "processes=[time,particles]"], cwd,
                                  env=env))
    assert "two distributions claim process 'particles'" in line


NO_TENSORFLOW = "raise ImportError('TensorFlow imported before the parameters were checked')\n"


@pytest.mark.parametrize(("args", "message"), [
    (["processes.time.cfl=50"], "processes.time.cfl must be in (0, 1]"),
    (["core.progress=sometimes"], "Invalid value 'sometimes', expected one of "
                                  "[auto, bar, log, off] (key 'core.progress')"),
    (["core.objective=mass"], "expected one of [volume, area, volume_change, "
                              "volume_change_misfit] (key 'core.objective')"),
    (["processes.thk.slope_type=vanleer"], "expected one of [superbee, minmod, upwind]"),
    (["processes.iceflow.method=magic"], "expected one of [emulated, solved, sia, diagnostic]"),
    (["processes.iceflow.physics.init_arrhenius=-1"],
     "processes.iceflow.physics.init_arrhenius must be positive, got -1.0"),
    (["processes.smb_simple.array=[[time,ela],[0,1]]"],
     "processes.smb_simple.array: header ['time', 'ela'] lacks column(s) gradabl, gradacc"),
    (["inputs.local.crop.xmin=5000", "inputs.local.crop.xmax=100"],
     "inputs.local.crop.xmin (5000 m) must be below inputs.local.crop.xmax (100 m)"),
    (["inputs.local.coarsening.ratio=0"], "inputs.local.coarsening.ratio must be a positive"),
    (["processes=[smb_simple,iceflow,time,thk,thk]"], "processes lists 'thk' 2 times"),
    (["core.url_data_sha256=abc"], "core.url_data_sha256: expected '' or 64 hexadecimal"),
])
def test_bad_parameters_stop_before_tensorflow_starts(tmp_path, args, message):
    # TensorFlow cannot even be imported here: the line must come before it
    site = write_fake_dist(tmp_path / "site", "fake-tf", "0", {}, {"tensorflow": NO_TENSORFLOW})
    line = one_line_error(run_igm(args, tmp_path, env={"PYTHONPATH": str(site)}))
    assert message in line


SCRATCH = PLUGIN_HEAD + """
from pathlib import Path

class Scratch:
    '''A memory holding a working file, removed by close().'''

    def __init__(self, path):
        self.path = path
        path.write_text("work in progress")

    def state_dict(self):
        return {}

    def load_state_dict(self, saved):
        pass

    def close(self):
        self.path.unlink()
        (self.path.parent / "closed.txt").write_text("closed once")

@hookimpl
def igm_process_initialize(run):
    return Scratch(Path(run.output_dir) / ".scratch.tmp")

@hookimpl
def igm_process_update(state):
    if state.it == 2 and state.t_end > 2002.5:
        raise RuntimeError("disk quota exceeded")
"""


def test_memories_are_closed_when_the_run_ends_failed_or_completed(experiment_dir, tmp_path):
    env = fake_plugin(tmp_path, "scratch", SCRATCH)
    for end, ok in (("2002", True), ("2003", False)):
        cwd = experiment_dir("params", BASIC)
        proc = run_igm(["+experiment=params", "processes=[time,scratch]",
                        f"processes.time.end={end}", f"hydra.run.dir=run{end}"], cwd, env=env)
        assert (proc.returncode == 0) is ok, proc.stderr[-2000:]
        run = cwd / f"run{end}"
        assert not (run / ".scratch.tmp").exists()
        assert (run / "closed.txt").read_text() == "closed once"


ALBEDO = PLUGIN_HEAD + """
from igm_core import Field

provides = (Field("albedo", "1", "surface albedo"),)

@hookimpl
def igm_process_update(state):
    state.albedo = state.thk * 0.0 + 0.3
"""

DARKENER = PLUGIN_HEAD + """
@hookimpl
def igm_process_update(state):
    state.albedo = state.albedo * 0.5  # another process's field, written over
"""


def writers_env(tmp_path, darkener: str) -> dict[str, str]:
    site = write_fake_dist(tmp_path / "site", "igm-surface", "1.0",
                           {"igm.processes": {"albedo": "igm_surface.albedo",
                                              "darkener": "igm_surface.darkener"}},
                           {"igm_surface.albedo": ALBEDO, "igm_surface.darkener": darkener})
    return {"PYTHONPATH": str(site)}


def test_a_process_writing_another_process_s_field_is_one_line(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[time,albedo,darkener]"], cwd,
                   env=writers_env(tmp_path, DARKENER))
    assert one_line_error(proc) == (
        "igm_run: error: process 'darkener' wrote field 'albedo' in igm_process_update at "
        "t=2000 yr (step 0), which process 'albedo' writes: hand process 'albedo' a rate "
        "instead (a field declared with igm_core.Field(..., rate_of='albedo'))")


def test_two_processes_providing_one_field_are_refused_before_the_run(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC)
    declared = DARKENER.replace("@hookimpl", 'provides = ("albedo",)\n\n@hookimpl', 1)
    proc = run_igm(["+experiment=params", "processes=[time,albedo,darkener]"], cwd,
                   env=writers_env(tmp_path, declared))
    assert one_line_error(proc) == (
        "igm_run: error: process 'darkener' and process 'albedo' both provide field 'albedo': "
        "one process writes each field; the other hands it a rate (a field declared with "
        "igm_core.Field(..., rate_of='albedo'))")

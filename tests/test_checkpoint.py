"""Checkpoints and restart: the file format, every built-in plugin's memory
round trip, and igm_run runs stopped and continued (a new folder, in place,
after SIGTERM) that write exactly the files of the run in one piece; SIGUSR1,
Ctrl-C, the run-folder lock, and checkpoints of another configuration."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HEF, assert_same_outputs, igm_run_exe, run_igm
from test_cli import one_line_error
from test_multirun import TINY

from igm_core import checkpoint
from igm_core.errors import ConfigError, PluginError
from igm_core.state import State
from igm_core.testing import check_checkpoint_round_trip, make_state


@pytest.fixture
def reference(hef_reference) -> Path:
    """The run in one piece."""
    return hef_reference


def checkpoint_at(folder: Path, t: float) -> Path:
    """The checkpoint of ``folder`` written at simulated time ``t``."""
    found = [p for p in checkpoint.numbered(folder / "checkpoints")
             if checkpoint.load(p).clock["t"] == t]
    assert len(found) == 1, sorted(p.name for p in (folder / "checkpoints").iterdir())
    return found[0]


def summary(folder: Path) -> dict:
    return json.loads((folder / "run_summary.json").read_text())


def wait_for(predicate, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


# -- the file format and the plugins' memories ----------------------------------


def test_a_checkpoint_keeps_every_kind_of_value_bit_for_bit(tmp_path):
    import tensorflow as tf

    state = make_state(nx=5, ny=4, thk=np.arange(20.0).reshape(4, 5))
    state.t, state.dt, state.it, state.t_end, state.saveresult = 1950.25, 0.125, 7, 2000.0, True
    state.particles = {"id": tf.constant([3, 4], tf.int64), "x": tf.constant([1.5, np.nan])}
    rng = np.random.default_rng(5)
    rng.random(3)
    memory = {"weights": [np.float32([1e-30, 3.3]), tf.Variable([[2.0]])], "rng": rng,
              "count": 2**70, "nothing": None, "ratio": math.pi, "step": np.float32(0.1),
              "window": (3, 9), "name": "emulated"}
    path = checkpoint.save(tmp_path / "c.npz", state, {"processes.x": memory},
                           {"processes.x": "process 'x'"}, {"series": {"t": [1950.0]}},
                           checkpoint.fingerprint(state, ()))
    back = checkpoint.load(path)
    assert back.clock == {"t": 1950.25, "dt": 0.125, "it": 7, "t_end": 2000.0,
                          "saveresult": True}
    np.testing.assert_array_equal(back.fields["thk"], state.thk.numpy())
    assert back.fields["particles"]["id"].dtype == tf.int64
    np.testing.assert_array_equal(back.fields["particles"]["x"].numpy(), [1.5, np.nan])
    saved = back.memories["processes.x"]
    assert saved["weights"][0].dtype == np.float32 and saved["weights"][0][0] == np.float32(1e-30)
    assert isinstance(saved["weights"][1], tf.Variable)
    assert saved["rng"].random() == rng.random()  # the generator continues exactly
    assert saved["count"] == 2**70 and saved["nothing"] is None and saved["ratio"] == math.pi
    assert saved["step"].dtype == np.float32 and saved["window"] == (3, 9)
    assert back.result == {"series": {"t": [1950.0]}}
    restored = State()
    back.restore_state(restored)
    assert (restored.t, restored.it, restored.grid.shape) == (1950.25, 7, (4, 5))


def test_a_memory_no_checkpoint_can_hold_is_refused_when_the_plugin_starts():
    with pytest.raises(PluginError, match=r"process 'x' returned a object from its initialize "
                       r"hook: a plugin's memory needs state_dict\(\) and load_state_dict\(\), or "
                       r"to be a dataclass or a dict"):
        checkpoint.check_memory("process 'x'", object())


def test_a_saved_memory_that_does_not_fit_the_plugin_is_one_line():
    from igm_plugins.processes.thk import MassBudget

    with pytest.raises(ConfigError, match=r"the checkpoint does not fit process 'thk': it "
                       r"saved \['smb_m3'\], the plugin keeps \['clip', 'outflow', "):
        checkpoint.restore_memory("process 'thk'", MassBudget(), {"smb_m3": 1.0})


def test_fingerprint_differences_name_what_differs():
    base = {"grid": {"ny": 45, "nx": 55, "x0": 0.0, "y0": 0.0, "dx": 200.0},
            "plugins": ["processes.iceflow (igm-core 0.1.0)", "processes.time (igm-core 0.1.0)"]}
    assert checkpoint.differences(base, base) == ""
    finer = {**base, "grid": {**base["grid"], "ny": 90, "nx": 110}}
    assert checkpoint.differences(base, finer) == "grid 45 x 55 cells there, 90 x 110 here"
    newer = {**base, "plugins": ["processes.iceflow (igm-core 0.2.0)", base["plugins"][1]]}
    assert checkpoint.differences(base, newer) == (
        "processes.iceflow (igm-core 0.1.0) there, igm-core 0.2.0 here")
    fewer = {**base, "plugins": base["plugins"][1:]}
    assert checkpoint.differences(base, fewer) == (
        "plugins [processes.iceflow, processes.time] there, [processes.time] here")


def _cap():
    ny, nx = 16, 20
    y, x = np.mgrid[0:ny, 0:nx]
    thk = np.maximum(0.0, 150.0 - 2.0 * ((x - 10) ** 2 + (y - 8) ** 2))
    return dict(nx=nx, ny=ny, dx=100.0, thk=thk, topg=2800.0 + 10.0 * x, smb=0.3 - 0.02 * x,
                usurf=2800.0 + 10.0 * x + thk, ubar=np.full((ny, nx), 3.0),
                vbar=np.full((ny, nx), -1.0))


def _iceflow(method: str):
    """iceflow with ``method``; ``emulated+solves``: the emulator corrected
    by a solve whenever its inputs change by 1 % (so the continued part holds
    one)."""
    from conftest import compose

    import igm_plugins.processes.iceflow as iceflow

    method, _, solves = method.partition("+")
    return iceflow, compose(iceflow.Params, {"method": method, "solver": {"nbitmax": 20},
                                             "emulator": {"retrain_freq": 1,
                                                          "solve_change": 0.01 if solves
                                                          else 0.0}})


@pytest.mark.parametrize("name", ["smb_simple", "thk", "vert_flow", "iceflow-emulated",
                                  "iceflow-emulated+solves", "iceflow-solved", "iceflow-sia"])
def test_every_built_in_process_continues_from_a_checkpoint_bit_for_bit(tmp_path, name):
    import importlib

    params = None
    if name.startswith("iceflow"):
        module, params = _iceflow(name.split("-")[1])
    else:
        module = importlib.import_module(f"igm_plugins.processes.{name}")

    def make():
        kwargs = _cap()
        if name == "vert_flow":
            kwargs.update(U=np.ones((3, 16, 20)), V=np.ones((3, 16, 20)), zeta=[0.0, 0.5, 1.0])
        return make_state(**kwargs)

    check_checkpoint_round_trip(module, "processes", make, tmp_path, params, before=2,
                                after=3, dt=0.5)


@pytest.mark.parametrize("name", ["local", "plot2d"])
def test_every_built_in_output_continues_its_files_from_a_checkpoint(tmp_path, name):
    import importlib

    from conftest import assert_same_netcdf

    module = importlib.import_module(f"igm_plugins.outputs.{name}")
    params = module.Params(vars_to_save=["thk", "topg"]) if name == "local" else module.Params(
        var="thk", animation="none")
    check_checkpoint_round_trip(module, "outputs", lambda: make_state(**_cap()), tmp_path,
                                params, before=2, after=3)
    if name == "local":  # the continued folder holds every save of the run in one piece
        assert_same_netcdf(tmp_path / "whole" / "output.nc", tmp_path / "second" / "output.nc")
        assert_same_netcdf(tmp_path / "whole" / "output_ts.nc",
                           tmp_path / "second" / "output_ts.nc")
    else:
        assert sorted(p.name for p in (tmp_path / "second" / "plot2d").iterdir()) == [
            f"thk_{t}.png" for t in (1, 2, 3, 4, 5)]


# -- igm_run: continued runs write the files of the run in one piece -------------


def test_a_run_continued_in_a_new_folder_writes_every_save_of_the_run_in_one_piece(
        reference, tmp_path):
    start = checkpoint_at(reference, 1915.0)
    folder = tmp_path / "continued"
    proc = run_igm([*HEF, f"core.restart={start}", f"hydra.run.dir={folder}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_outputs(reference, folder)
    record = summary(folder)
    assert record["status"] == "completed" and record["restarted_from"] == str(start)
    assert record["series"] == summary(reference)["series"]
    assert "continuing from" in (folder / "igm.log").read_text()


def test_a_run_continued_in_its_own_folder_drops_the_saves_after_the_checkpoint(
        reference, tmp_path):
    folder = tmp_path / "again"
    shutil.copytree(reference, folder)
    start = checkpoint_at(folder, 1915.0)
    proc = run_igm([*HEF, f"core.restart={start}", f"hydra.run.dir={folder}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_outputs(reference, folder)
    assert summary(folder)["attempts"] == 2


def test_sigterm_checkpoints_and_stops_and_resume_finishes_the_same_run(reference, tmp_path):
    folder = tmp_path / "stopped"
    proc = subprocess.Popen([igm_run_exe(), *HEF, f"hydra.run.dir={folder}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: checkpoint.latest(folder) is not None, what="a first checkpoint")
        # a second run in the folder in use is refused, naming the run that holds it
        second = run_igm([*HEF, f"hydra.run.dir={folder}"], tmp_path)
        line = one_line_error(second)
        assert f"run folder {folder} is in use by igm_run pid {proc.pid}" in line
        assert "(igm.lock); choose another hydra.run.dir" in line
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("igm_run:")]
    assert len(lines) == 1 and lines[0].startswith("igm_run: interrupted by SIGTERM at t=19")
    assert lines[0].endswith(f"; continue it with: igm_run --resume {folder}")
    stopped = summary(folder)
    assert stopped["status"] == "interrupted" and Path(stopped["checkpoint"]).is_file()
    assert stopped["t_end"] < 1930.0
    resumed = run_igm(["--resume", str(folder)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = summary(folder)
    assert record["status"] == "completed" and record["attempts"] == 2
    assert record["restarted_from"] == stopped["checkpoint"]
    assert_same_outputs(reference, folder)
    assert not (folder / "igm.lock").exists()


def _started(folder: Path) -> bool:
    log = folder / "igm.log"
    return log.is_file() and "cells of 200 m" in log.read_text()


def test_sigusr1_writes_a_checkpoint_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "usr1"
    args = [*HEF[:-2], "processes.time.end=1906", "core.checkpoint.every_minutes=0",
            "core.checkpoint.at_end=false", f"hydra.run.dir={folder}"]
    proc = subprocess.Popen([igm_run_exe(), *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _started(folder), what="the input to be read")
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr[-2000:]
    assert summary(folder)["status"] == "completed"
    (written,) = checkpoint.numbered(folder / "checkpoints")
    assert checkpoint.load(written).clock["t"] < 1906.0
    assert "checkpoint (on SIGUSR1)" in (folder / "igm.log").read_text()


def test_ctrl_c_is_one_line_and_leaves_the_run_interrupted(tmp_path):
    folder = tmp_path / "ctrl-c"
    proc = subprocess.Popen([igm_run_exe(), *HEF, f"hydra.run.dir={folder}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _started(folder), what="the input to be read")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("igm_run:")]
    assert len(lines) == 1 and lines[0].startswith("igm_run: interrupted by Ctrl-C (SIGINT)")
    assert summary(folder)["status"] == "interrupted"


@pytest.mark.parametrize(("change", "message"), [
    ("inputs.local.coarsening.ratio=2", "grid 45 x 55 cells there, 90 x 110 here"),
    ("outputs=[local]",
     "plugins [inputs.local, processes.smb_simple, processes.iceflow, processes.time, "
     "processes.thk, processes.vert_flow, processes.particles, outputs.local, outputs.plot2d] "
     "there, [inputs.local, processes.smb_simple, processes.iceflow, processes.time, "
     "processes.thk, processes.vert_flow, processes.particles, outputs.local] here"),
])
def test_a_checkpoint_of_another_configuration_is_refused(reference, tmp_path, change,
                                                          message):
    start = checkpoint_at(reference, 1910.0)
    line = one_line_error(run_igm([*HEF, change, f"core.restart={start}",
                                   f"hydra.run.dir={tmp_path / 'other'}"], tmp_path))
    assert line == (f"igm_run: error: checkpoint {start} is from another configuration: "
                    f"{message}")


# -- what a run finds in its folder -------------------------------------------------


def test_a_run_folder_holds_one_run(experiment_dir, tmp_path):
    cwd = experiment_dir("params", TINY)
    folder = tmp_path / "run"
    args = ["+experiment=params", f"hydra.run.dir={folder}"]
    # a stale lock of a killed run does not keep the folder
    folder.mkdir()
    (folder / "igm.lock").write_text("igm_run pid 999999 on elsewhere since 2026-01-01 00:00:00")
    first = run_igm(args, cwd)
    assert first.returncode == 0, first.stderr
    before = (folder / "run_summary.json").read_text()
    # the same run again: nothing to do, nothing touched
    again = run_igm([*args, "core.progress=log"], cwd)
    assert again.returncode == 0, again.stderr
    assert f"run folder {folder} already holds this run, completed: nothing to do" in (
        again.stdout + again.stderr)
    assert (folder / "run_summary.json").read_text() == before
    # another configuration in the same folder: refused with the difference
    line = one_line_error(run_igm([*args, "processes.time.end=5"], cwd))
    assert line == (f"igm_run: error: run folder {folder} holds a run of another configuration "
                    "(processes.time.end: 3.0 there, 5.0 here); choose another hydra.run.dir, "
                    f"or continue that run with another configuration with "
                    f"core.restart={folder}")
    assert (folder / "run_summary.json").read_text() == before


@pytest.mark.parametrize(("args", "message"), [
    (["--resume"], "igm_run --resume needs a folder: a sweep (multirun/DATE/TIME) or a run "
                   "(outputs/DATE/TIME)"),
    (["--resume", "nowhere"], "igm_run --resume: {tmp}/nowhere is neither a sweep folder (with "
                              "multirun.yaml) nor a run folder (with .hydra/hydra.yaml)"),
    (["core.restart=nowhere"], "core.restart: {tmp}/nowhere is neither a checkpoint file nor a "
                               "run folder"),
    (["core.restart=empty"], "core.restart: no checkpoint in {tmp}/empty (looked for "
                             "checkpoints/checkpoint_*.npz)"),
])
def test_resume_and_restart_of_nothing_are_one_line(experiment_dir, tmp_path, args, message):
    cwd = experiment_dir("params", TINY)
    (cwd / "empty").mkdir()
    line = one_line_error(run_igm(["+experiment=params", *args] if args[0] != "--resume"
                                  else args, cwd))
    assert line == "igm_run: error: " + message.format(tmp=cwd)


def test_resume_of_an_optuna_sweep_says_it_resumes_from_its_storage(tmp_path):
    sweep = tmp_path / "multirun" / "d" / "t"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper."
        "OptunaSweeper\n")
    line = one_line_error(run_igm(["--resume", str(sweep)], tmp_path))
    assert line == (f"igm_run: error: igm_run --resume: {sweep} was swept by "
                    "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper, not "
                    "Hydra's basic sweeper; an Optuna study resumes from its storage when the "
                    "same command runs again")


def test_a_continued_run_needs_the_same_fields_in_output_nc(hef_reference, tmp_path):
    start = checkpoint_at(hef_reference, 1910.0)
    line = one_line_error(run_igm([*HEF, f"core.restart={start}",
                                   "outputs.local.vars_to_save=[thk]",
                                   f"hydra.run.dir={tmp_path / 'other'}"], tmp_path))
    assert line.startswith("igm_run: error: outputs.local.vars_to_save: the checkpoint's "
                           "output.nc holds topg, usurf, thk")
    assert line.endswith("so the same fields are needed (configured: thk)")

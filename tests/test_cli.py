"""``igm_run`` in a subprocess: runs, overrides, listing and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, run_igm, write_fake_dist, write_tiny_input

BASIC = """
# @package _global_
defaults:
  - override /inputs: [local]
  - override /processes: [time]
  - override /outputs: []
processes:
  time:
    start: 2000.0
    end: 2003.0
    save: 1.0
core:
  progress: log
"""


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert a failed run printed exactly one error line and no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Error executing job" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("igm_run: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def output_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "outputs").glob("*/*/run_summary.json"))


def test_plugins_listing_names_stages_distribution_and_version(tmp_path):
    proc = run_igm(["--plugins"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for header in ("inputs (entry-point group igm.inputs):",
                   "processes (entry-point group igm.processes):",
                   "outputs (entry-point group igm.outputs):"):
        assert header in out
    rows = {" ".join(ln.split()) for ln in out.splitlines()}
    assert "time igm-core 0.1.0 (igm_plugins.processes.time)" in rows


def test_import_listing_and_schemas_do_not_import_tensorflow():
    code = ("import sys, igm_core\n"
            "from igm_core.plugins import discover, format_listing\n"
            "from igm_core.app import register_configs\n"
            "found = discover(); format_listing(found); register_configs(found)\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_experiment_run_writes_config_log_and_summary(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes.time.start=1999"], cwd)
    assert proc.returncode == 0, proc.stderr
    (out,) = output_dirs(cwd)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["t_start"] == 1999.0 and summary["t_end"] == 2003.0
    assert summary["steps"] == 5  # step 0 at t=1999, then 4 steps of 1 yr (step_max)
    assert summary["series"]["t"] == [1999.0, 2000.0, 2001.0, 2002.0, 2003.0]
    assert summary["objective"] == pytest.approx(summary["volume_km3"])
    assert summary["volume_km3"] > 0
    assert "processes.time.start=1999" in summary["overrides"]
    assert (out / ".hydra" / "config.yaml").is_file()
    assert "start: 1999.0" in (out / "config_resolved.yaml").read_text()
    log = (out / "igm.log").read_text()
    assert "time spent per plugin" in log and "processes.time" in log


RECORD = """
from dataclasses import dataclass
from igm_core import hookimpl

@dataclass
class Params:
    tag: str = "{name}"

@hookimpl
def igm_process_initialize(params, run):
    with open(run.output_dir / "order.txt", "a") as fh:
        fh.write(params.tag + "\\n")
"""


def test_list_override_selects_plugins_in_its_order(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-order", "1.0",
                           {"igm.processes": {n: f"igm_order.{n}" for n in ("first", "second")}},
                           {f"igm_order.{n}": RECORD.format(name=n) for n in ("first", "second")})
    cwd = experiment_dir("params", BASIC)
    proc = run_igm(["+experiment=params", "processes=[second,time,first]",
                    "processes.first.tag=uno"], cwd, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    (out,) = output_dirs(cwd)
    assert (out / "order.txt").read_text().split() == ["second", "uno"]


def test_unknown_plugin_suggests_and_lists(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[tmie]"], cwd))
    assert "unknown process plugin 'tmie' (did you mean 'time'?); installed processes:" in line


def test_misspelled_key_in_experiment_file_names_file_and_key(experiment_dir):
    cwd = experiment_dir("typo", BASIC.replace("    end: 2003.0", "    ennd: 2003.0"))
    line = one_line_error(run_igm(["+experiment=typo"], cwd))
    assert "experiment/typo.yaml" in line
    assert "processes.time.ennd" in line and "did you mean 'end'?" in line


def test_wrong_type_in_override_names_the_key(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes.time.start=abc"], cwd))
    assert "processes.time.start" in line and "abc" in line


def test_an_unquoted_off_choice_gets_a_quoting_hint(experiment_dir):
    cwd = experiment_dir("params", BASIC.replace("progress: log", "progress: off"))
    line = one_line_error(run_igm(["+experiment=params"], cwd))
    assert line == ("igm_run: error: in 'experiment/params.yaml': Invalid value 'False', "
                    "expected one of [auto, bar, log, off] (key 'core.progress'); YAML reads "
                    "an unquoted off, no, on or yes as a boolean: quote the choice (\"off\")")
    quoted = experiment_dir("params", BASIC.replace("progress: log", 'progress: "off"'))
    proc = run_igm(["+experiment=params"], quoted)
    assert proc.returncode == 0, proc.stderr


def test_missing_experiment_file(tmp_path):
    line = one_line_error(run_igm(["+experiment=nope"], tmp_path))
    assert "experiment file not found: no 'experiment/nope.yaml'" in line


def test_debug_level_shows_the_traceback(tmp_path):
    proc = run_igm(["+experiment=nope", "core.logging_level=DEBUG"], tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


BROKEN = {
    "import": ("import numpy\nimport not_a_real_package_xyz\n", "failed to import"),
    "hook": ("from dataclasses import dataclass\nfrom igm_core import hookimpl\n"
             "@dataclass\nclass Params:\n    pass\n"
             "@hookimpl\ndef igm_process_update(params, state, speed):\n    pass\n",
             "breaks the hook contract"),
    "field": ("from dataclasses import dataclass\nfrom igm_core import hookimpl\n"
              "requires = ('W',)\n@dataclass\nclass Params:\n    pass\n"
              "@hookimpl\ndef igm_process_update(state):\n    pass\n",
              "needs field 'W', which no selected plugin provides"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_third_party_plugin_gives_one_line(experiment_dir, tmp_path, kind):
    source, expected = BROKEN[kind]
    site = write_fake_dist(tmp_path / "site", "igm-broken", "0.3",
                           {"igm.processes": {"broken": "igm_broken.plugin"}},
                           {"igm_broken.plugin": source})
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[time,broken]"], cwd,
                                  env={"PYTHONPATH": str(site)}))
    assert "process 'broken'" in line and expected in line
    if kind == "import":
        assert "igm-broken 0.3" in line and "not_a_real_package_xyz" in line


def test_two_distributions_claiming_a_name(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-clash", "2.0",
                           {"igm.processes": {"time": "igm_clash.time"}},
                           {"igm_clash.time": "X = 1\n"})
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params"], cwd, env={"PYTHONPATH": str(site)}))
    assert "two distributions claim process 'time'" in line and "igm-clash 2.0" in line


def test_run_without_a_clock_is_a_clear_error(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-idle", "1.0",
                           {"igm.processes": {"idle": "igm_idle.idle"}},
                           {"igm_idle.idle": BROKEN["field"][0].replace("('W',)", "()")})
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[idle]"], cwd,
                                  env={"PYTHONPATH": str(site)}))
    assert "no process sets the clock (state.t, state.t_end): add 'time' to processes" in line


def test_url_data_fetches_a_zip_once_and_runs_from_it(experiment_dir, tmp_path):
    cwd = experiment_dir("params", BASIC + "inputs:\n  local:\n    filename: glacier.nc\n")
    archive = tmp_path / "remote" / "data.zip"
    archive.parent.mkdir()
    write_tiny_input(tmp_path / "remote" / "glacier.nc")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "remote" / "glacier.nc", "glacier.nc")
    args = ["+experiment=params", f"core.url_data={archive.as_uri()}", "core.folder_data=mydata"]
    proc = run_igm(args, cwd)
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "mydata" / "glacier.nc").is_file()
    assert (cwd / "mydata" / ".igm_url_data").read_text().splitlines()[0] == archive.as_uri()


def test_url_data_offline_is_one_line(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params",
                                   "core.url_data=http://127.0.0.1:9/data.zip"], cwd))
    assert "core.url_data: could not download 'http://127.0.0.1:9/data.zip'" in line


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(ln.strip() for ln in readme.splitlines() if "tox" in ln and ln.strip()
                   and not ln.startswith("#"))
    assert command in ci


def test_added_unknown_key_is_refused(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "+processes.time.new_key=1"], cwd))
    assert "processes.time.new_key is not a parameter of process 'time'" in line


def test_a_comma_sweep_without_multirun_keeps_hydras_hint(experiment_dir):
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes.time.start=1990,1950"],
                                  cwd))
    assert "Ambiguous value for argument 'processes.time.start=1990,1950'" in line
    assert "To sweep over it, add --multirun to your command line" in line


RUNAWAY = """
from dataclasses import dataclass
import numpy as np
from igm_core import hookimpl

provides = ("ubar", "vbar")

@dataclass
class Params:
    pass

@hookimpl
def igm_process_initialize(state):
    state.ubar = np.zeros(state.grid.shape, "float32")
    state.vbar = np.zeros(state.grid.shape, "float32")

@hookimpl
def igm_process_update(state):
    # a flow that blows up: ten times faster at every step
    state.ubar = np.full(state.grid.shape, 10.0 ** state.it, "float32")
"""


def test_a_runaway_flow_stops_in_one_line_instead_of_crawling(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-runaway", "1.0",
                           {"igm.processes": {"runaway": "igm_runaway.runaway"}},
                           {"igm_runaway.runaway": RUNAWAY})
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[runaway,time]",
                                   "processes.time.end=2100"], cwd,
                                  env={"PYTHONPATH": str(site)}))
    # 10, 100, 1000, 10000 m/yr: steps of 1, 0.3, 0.03, 0.003 yr; then 100 km/yr
    assert line.startswith("igm_run: error: processes.time: the time step fell to 0.0003 yr at "
                           "t=2001.33 yr (step 5), below the floor cfl*dx/speed_max = 0.0006 yr")
    assert "the depth-averaged ice speed reaches 100 km/yr at x=1000 m, y=5000 m" in line
    assert "the ice flow has blown up" in line


QUITTER = """
import sys
from dataclasses import dataclass
from igm_core import hookimpl

@dataclass
class Params:
    pass

@hookimpl
def igm_process_update(state):
    sys.exit(3)
"""


def test_a_plugin_calling_sys_exit_is_one_error_line(experiment_dir, tmp_path):
    site = write_fake_dist(tmp_path / "site", "igm-quitter", "1.0",
                           {"igm.processes": {"quitter": "igm_quitter.quitter"}},
                           {"igm_quitter.quitter": QUITTER})
    cwd = experiment_dir("params", BASIC)
    line = one_line_error(run_igm(["+experiment=params", "processes=[time,quitter]"], cwd,
                                  env={"PYTHONPATH": str(site)}))
    assert line == ("igm_run: error: process 'quitter' called sys.exit(3) in igm_process_update "
                    "at t=2000 yr (step 0)")


def test_help_lists_every_flag_and_version_is_igm_core(tmp_path):
    import igm_core

    helptext = run_igm(["--help"], tmp_path)
    assert helptext.returncode == 0, helptext.stderr
    for flag in ("--plugins", "--summary", "--resume", "--version", "--multirun", "--cfg",
                 "+experiment=NAME"):
        assert flag in helptext.stdout, flag
    assert "processes: iceflow, particles, smb_simple, thk, time, vert_flow" in helptext.stdout
    expected = f"igm_run (igm-core {igm_core.__version__}; Hydra "
    assert run_igm(["--version"], tmp_path).stdout.startswith(expected)
    module = subprocess.run([sys.executable, "-m", "igm_core", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert module.returncode == 0 and module.stdout.startswith(expected), module.stderr

"""The third-party route: a separate package with an ``igm.processes`` entry
point, installed with pip, selected by name, run with its own defaults and
overridable keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import netCDF4
import numpy as np
import pytest
from conftest import ROOT, run_igm

SECONDS_PER_YEAR = 31556926.0

EXPERIMENT = """
# @package _global_
defaults:
  - override /inputs: [local]
  - override /processes: [iceflow, time, geothermal_melt, thk]
  - override /outputs: [local]
processes:
  time:
    start: 0.0
    end: 3.0
    save: 1.0
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """Environment in which igm-example is installed: the tox env where it was
    pip-installed, else a pip ``--target`` folder put on PYTHONPATH."""
    try:
        distribution("igm-example")
        return {}
    except PackageNotFoundError:
        site = tmp_path_factory.mktemp("site")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(site), str(ROOT / "tests" / "example_plugin")],
                       check=True)
        return {"PYTHONPATH": str(site)}


def melt_rate(heat_flux: float) -> float:
    """m of ice per year."""
    return heat_flux * SECONDS_PER_YEAR / (910.0 * 3.34e5)


def test_listed_as_installed(plugin_env, tmp_path):
    proc = run_igm(["--plugins"], tmp_path, env=plugin_env)
    rows = {" ".join(ln.split()) for ln in proc.stdout.splitlines()}
    assert any(r.startswith("geothermal_melt igm-example 0.1.0") for r in rows), proc.stdout


@pytest.mark.parametrize("heat_flux", [None, 0.5])
def test_runs_with_own_defaults_and_overrides(plugin_env, experiment_dir, heat_flux):
    cwd = experiment_dir("melt", EXPERIMENT)
    args = ["+experiment=melt"]
    if heat_flux is not None:
        args.append(f"processes.geothermal_melt.heat_flux={heat_flux}")
    proc = run_igm(args, cwd, env=plugin_env)
    assert proc.returncode == 0, proc.stderr
    (summary_file,) = (cwd / "outputs").glob("*/*/run_summary.json")
    summary = json.loads(summary_file.read_text())
    assert any(p["name"] == "geothermal_melt" and p["distribution"] == "igm-example"
               for p in summary["plugins"])
    # the melt handed to thk as a rate is in thk's budget, under the ice
    with netCDF4.Dataset(summary_file.parent / "output_ts.nc") as ds:
        sources = ds["budget_sources"][1:]  # m3 yr-1, mean since the previous save
        area_m2 = 1e6 * np.asarray(ds["area"][:])
        assert ds["budget_sources"].units == "m3 yr-1"
    # the melt rate times the ice area: the area of this tiny glacier's
    # margin flickers from step to step (1.01 <-> 1.13 km2 at t = 0.3 yr),
    # so the areas at the saves do not bracket it: within 10 % of their mean
    melt = melt_rate(heat_flux or 0.065)
    np.testing.assert_allclose(-sources, melt * 0.5 * (area_m2[:-1] + area_m2[1:]), rtol=0.1)


def test_passes_the_kits_contract_and_checkpoints(plugin_env, tmp_path):
    """The package's module through igm_core.testing's contract (hooks,
    declared fields, checkpoint round trip of its memory), in a fresh
    interpreter that sees the installed package."""
    test = tmp_path / "test_contract.py"
    test.write_text(
        "import numpy as np\n"
        "from igm_example import geothermal_melt\n"
        "from igm_core.testing import ProcessContract, PluginRun, make_state\n\n"
        "class TestGeothermalMelt(ProcessContract):\n"
        "    plugin = geothermal_melt\n\n"
        "def test_memory_adds_up_the_melt(tmp_path):\n"
        "    run = PluginRun(geothermal_melt, 'processes', make_state(thk=100.0, topg=0.0),\n"
        "                    output_dir=tmp_path).start()\n"
        "    for _ in range(4):\n"
        "        run.step(0.5)\n"
        "    rate = geothermal_melt.melt_rate(geothermal_melt.Params())\n"
        "    assert np.isclose(run.memory.volume_m3, rate * 2.0 * 20 * 16 * 100.0**2,\n"
        "                      rtol=1e-3)\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(test)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **plugin_env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout

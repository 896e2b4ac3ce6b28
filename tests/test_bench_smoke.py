"""The benchmark harness (bench/compare_igm.py) must never rot: run it for
our model only on a tiny grid for a few years, and check the IGM 3.2.1
translation of the benchmark experiment (no IGM install needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import run_igm

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from igm_translate import module_lists, to_igm321, translate_override  # noqa: E402


def test_harness_runs_our_model_on_a_tiny_grid(tmp_path):
    out = tmp_path / "measures.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compare_igm.py"), "--models", "ours", "--ratios", "8",
         "--years", "1900", "1903", "--save", "1", "--solve-ratios", "8",
         "--workdir", str(tmp_path / "runs"), "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| ours-main | 400 m" in proc.stdout
    record = json.loads(out.read_text())
    (run,) = record["runs"]
    assert run["status"] == "ok" and run["model"] == "ours" and run["dx_m"] == 400.0
    # step 0 (initial state) + at least one step per simulated year
    assert run["steps"] >= 4
    assert 0 < run["startup_s"] < run["total_s"]
    assert run["loop_s"] > 0 and math.isclose(run["loop_s_per_yr"], run["loop_s"] / 3.0)
    assert run["peak_mib"] > 50
    assert math.isfinite(run["volume_km3"]) and run["volume_km3"] > 0.1
    if "local" in {ep.name for ep in metadata.entry_points(group="igm.outputs")}:
        assert run["output"].endswith("output.nc")
        assert run["cells"] == (180 // 8) * (220 // 8)
        # the converged solve on the run's final geometry ran
        assert math.isfinite(run["diffs"]["speed_vs_solve"])
        # and the error at every saved year (the untrained-for 400 m grid is
        # some 250 % off) agrees with it at the last one
        from speed_error_by_record import errors

        by_record = errors(Path(run["output"]))
        assert len(by_record) == 4 and all(math.isfinite(e) and e > 0 for e in by_record)
        assert abs(by_record[-1] - run["diffs"]["speed_vs_solve"]) < 0.05
    assert record["machine"]["gpu"].startswith("none")


def test_igm321_translation_of_the_benchmark_experiment():
    ours = yaml.safe_load((BENCH / "experiment" / "hef_century.yaml").read_text())
    tr = to_igm321(ours)
    exp = tr.experiment
    assert module_lists(exp)["processes"] == ["smb", "iceflow", "time", "thk", "particles"]
    assert exp["processes"]["smb"]["method"] == "simple"
    assert exp["processes"]["smb"]["simple"]["array"][1] == [1900, 0.009, 0.005, 2950, 2.0]
    assert exp["processes"]["iceflow"]["vertical_velocity"]["enabled"] is True
    assert "smb_simple" not in exp["processes"]
    assert exp["inputs"]["local"]["filename"] == "input.nc"
    assert tr.data_files == ["pkg://igm_plugins.data/hintereisferner/input.nc"]
    # IGM 3.2.1's smb masks positive SMB outside icemask; ours does not (yet)
    assert tr.drop_variables == ["icemask"]
    assert to_igm321(ours, ours_masks_smb=True).drop_variables == []
    assert any("vert_flow removed" in n for n in tr.notes)
    assert any("core.folder_data" in n for n in tr.notes)
    # the source experiment is left as it was
    assert "smb_simple" in module_lists(ours)["processes"]


def test_igm321_translation_without_vert_flow_and_renamed_keys():
    ours = {"defaults": [{"override /processes": ["iceflow", "time", "thk", "particles"]}],
            "processes": {"particles": {"density_seeding": 0.3},
                          "iceflow": {"physics": {"init_arrhenius": 50.0}}}}
    exp = to_igm321(ours).experiment
    assert exp["processes"]["particles"] == {"seeding": {"density": 0.3},
                                             "tracking": {"method": "simple"}}
    assert exp["processes"]["iceflow"]["physics"] == {"viscosity": {"arrhenius": 50.0}}
    assert translate_override("processes.particles.density_seeding") == \
        "processes.particles.seeding.density"
    assert translate_override("processes.smb_simple.update_freq") == \
        "processes.smb.simple.update_freq"


def test_igm321_translation_refuses_sia():
    ours = {"defaults": [{"override /processes": ["iceflow", "time"]}],
            "processes": {"iceflow": {"method": "sia"}}}
    with pytest.raises(ValueError, match=r"processes\.iceflow\.method: sia"):
        to_igm321(ours)


def test_synthetic_range_is_a_glaciated_range_at_every_size(tmp_path):
    import netCDF4
    import numpy as np
    from synthetic_range import MEAN_SLOPE, YIELD_STRESS_PA, driving_stress, write_range

    for n in (80, 240):
        path = tmp_path / f"range_{n}.nc"
        ela = write_range(path, n, 100.0)
        with netCDF4.Dataset(path) as ds:
            topg, thk, usurf = (np.asarray(ds[k][:]) for k in ("topg", "thk", "usurf"))
            assert ds["x"].units == "m" and float(ds.ela_m) == ela
        gy, gx = np.gradient(topg.astype("float64"), 100.0)
        assert np.mean(np.hypot(gx, gy)) == pytest.approx(MEAN_SLOPE, rel=1e-3)
        assert 1500.0 < topg.max() - topg.min() < 3500.0  # an Alpine relief
        assert 0.2 < np.mean(thk > 1.0) < 0.5  # about a third glaciated
        assert 0.0 <= thk.min() and thk.max() <= 250.0
        np.testing.assert_allclose(usurf, topg + thk)
        assert np.all(thk[topg < ela - 100.0] == 0.0)
        # ice that suits its slopes: thin on steep ones, nowhere above the plastic bound
        stress = driving_stress(topg, thk.astype("float64"), 100.0)
        assert 0.9 * YIELD_STRESS_PA < stress.max() <= YIELD_STRESS_PA


RANGE_RUN = """
# @package _global_
defaults:
  - override /inputs: [local]
  - override /processes: [smb_simple, iceflow, time, thk]
  - override /outputs: [local]
inputs:
  local:
    filename: {path}
processes:
  smb_simple:
    array:
      - ["time", "gradabl", "gradacc", "ela", "accmax"]
      - [2000, 0.009, 0.005, {ela:.1f}, 2.0]
      - [2003, 0.009, 0.005, {ela:.1f}, 2.0]
  iceflow:
    emulator:
      solve_change: 0.05
  time:
    start: 2000.0
    end: 2003.0
    save: 1.0
"""


def test_the_range_flows_like_mountain_glaciers_under_the_corrected_flow(tmp_path,
                                                                         experiment_dir):
    """The scaling range's ice suits its slopes: under the emulator
    corrected by converged solves (the higher-order answer), the 60 x 60
    range flows at about 10 m/yr at most (the range before, with ice far
    beyond its yield stress, reached 53 km/yr and stopped the run)."""
    import netCDF4
    import numpy as np
    from synthetic_range import write_range

    path = tmp_path / "range.nc"
    ela = write_range(path, 60, 100.0)
    cwd = experiment_dir("range", RANGE_RUN.format(path=path, ela=ela))
    proc = run_igm(["+experiment=range"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = cwd.glob("outputs/*/*/output.nc")
    with netCDF4.Dataset(out) as ds:
        speed = np.asarray(ds["velsurf_mag"][:])
        thk = np.asarray(ds["thk"][:])
    assert speed.shape[0] == 4 and thk[-1].sum() > 0
    assert 1.0 < speed[thk > 1.0].max() < 200.0
    summary = json.loads(next(cwd.glob("outputs/*/*/run_summary.json")).read_text())
    assert summary["reports"]["process 'iceflow'"]["solves"] >= 1


def test_scaling_bench_runs_our_model_on_two_tiny_ranges(tmp_path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_scaling.py"), "--sizes", "40", "60", "--models",
         "ours", "--years", "2", "--workdir", str(tmp_path / "runs"), "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [(r["model"], r["cells"], r["status"]) for r in record["rows"]] == [
        ("ours", 1600, "ok"), ("ours", 3600, "ok")]
    for row in record["rows"]:
        assert row["steps_per_yr"] >= 1 and row["ms_per_step"] > 0 and row["s_per_yr"] > 0
        assert row["peak_mib"] > record["empty_peak_mib"] > 50
        assert row["volume_km3"] > 0
    assert math.isfinite(record["exponents"]["ours"]["s_per_yr"])
    assert "| ours | 60x60 | 3,600 | ok |" in proc.stdout


def test_small_glacier_bench_prints_a_row_per_grid():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_small_glacier.py"), "--sizes", "48", "96", "--cap",
         "20", "--repeat", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines()
            if line.startswith("| 48 x 48") or line.startswith("| 96 x 96")]
    assert len(rows) == 2 and all(float(cell) > 0 for row in rows for cell in row[1:])


def test_gpu_check_script_is_valid_bash_and_refuses_unknown_modes(tmp_path):
    script = BENCH / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["bash", str(script), "fast"], capture_output=True, text=True,
                          env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check: unknown mode 'fast' (expected full or smoke)"


def test_gpu_check_without_a_python_or_wheels_is_one_line(tmp_path):
    env = {"OUT": str(tmp_path / "out"), "WHEELS": str(tmp_path / "none"),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2
    # the script's output goes through tee into its log
    assert (f"gpu_check: no IGM_PYTHON and no wheels in {tmp_path / 'none'} to install from"
            in (proc.stdout + proc.stderr).splitlines())


def test_gpu_check_full_mode_refuses_a_machine_without_gpu(tmp_path):
    env = {**os.environ, "IGM_PYTHON": sys.executable, "OUT": str(tmp_path),
           "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "full"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert ("gpu_check: TensorFlow sees no GPU (mode full needs one; mode smoke runs on the CPU)"
            in proc.stdout + proc.stderr)
    assert not (tmp_path / "century.json").exists()


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "IGM_PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "smoke"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| ours-main | 400 m" in report
    assert "| ours | basic | 4 |" in report and "| ours | joblib | 4 |" in report
    assert "| ours | 60x60 | 3,600 | ok |" in report
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"]

"""The sweep summary (summary.csv, summary.png, failed-job report) built
from job folders, and ``igm_run --summary DIR`` on an existing sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import run_igm

from igm_core import sweep
from igm_core.files import write_json

PNG = b"\x89PNG\r\n\x1a\n"


def make_job(root: Path, num: int, overrides: list[str], summary: dict | None) -> Path:
    """A job folder as Hydra and igm_run leave it."""
    folder = root / str(num)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        write_json(folder / "run_summary.json", {"job_num": num, "overrides": overrides,
                                                 **summary})
    return folder


def completed(volumes: list[float]) -> dict:
    t = [2000.0 + 10 * i for i in range(len(volumes))]
    return {"status": "completed", "wall_time_s": 1.5, "volume_km3": volumes[-1],
            "area_km2": 7.25, "objective": volumes[-1] - volumes[0], "started_at": 100.0,
            "ended_at": 101.5, "host": "node1", "devices": ["/physical_device:CPU:0"],
            "series": {"t": t, "volume_km3": volumes, "area_km2": [7.25] * len(t)}}


def sample_sweep(root: Path) -> Path:
    make_job(root, 0, ["a=1"], completed([0.60, 0.55, 0.50]))
    make_job(root, 1, ["a=2"], {**completed([0.60, 0.58]), "status": "failed",
                                "objective": None,
                                "error": "process 'thk' failed in update at t=2010 yr"})
    make_job(root, 2, ["a=3"], {"status": "running", "started_at": 100.0})
    make_job(root, 10, ["a=4"], None)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_summary_lists_every_job_in_order_with_status_and_figures(tmp_path):
    root = sample_sweep(tmp_path / "sweep")
    records = sweep.summarize(root)
    assert [r["folder"] for r in records] == ["0", "1", "2", "10"]
    with open(root / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(sweep.COLUMNS)
    assert [r["status"] for r in rows] == ["completed", "failed", "failed", "failed"]
    assert rows[0]["overrides"] == "a=1"
    assert float(rows[0]["volume_km3"]) == 0.5
    assert float(rows[0]["area_km2"]) == 7.25
    assert abs(float(rows[0]["objective"]) + 0.1) < 1e-12
    assert float(rows[0]["wall_time_s"]) == 1.5
    assert rows[0]["devices"] == "/physical_device:CPU:0"
    assert rows[1]["error"] == "process 'thk' failed in update at t=2010 yr"
    assert rows[2]["error"] == sweep.NOT_FINISHED
    assert rows[3]["error"] == sweep.NO_SUMMARY and rows[3]["overrides"] == "a=4"
    assert (root / "summary.png").read_bytes()[:8] == PNG


def test_report_names_each_failed_job_and_why(tmp_path):
    root = sample_sweep(tmp_path / "sweep")
    text = sweep.report(root, sweep.summarize(root))
    lines = text.splitlines()
    assert lines[0].startswith("sweep summary: 1 of 4 jobs completed")
    assert lines[1] == "3 of 4 jobs failed:"
    assert lines[2] == "  job 1 (a=2): process 'thk' failed in update at t=2010 yr"
    assert lines[3].startswith("  job 2 (a=3): did not finish")
    assert lines[4].startswith("  job 10 (a=4): no run_summary.json")


def test_all_completed_report_has_no_failures(tmp_path):
    root = tmp_path / "sweep"
    make_job(root, 0, ["a=1"], completed([1.0, 0.9]))
    make_job(root, 1, [], completed([1.0, 1.1]))
    records = sweep.summarize(root)
    assert sweep.failure_report(records) == ""
    assert sweep.label(records[1]) == "job 1"
    assert sweep.report(root, records).startswith("sweep summary: 2 of 2 jobs completed")


def test_igm_run_summary_command_on_an_existing_sweep(tmp_path):
    root = sample_sweep(tmp_path / "sweep")
    proc = run_igm(["--summary", str(root)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sweep summary: 1 of 4 jobs completed" in proc.stdout
    assert "job 1 (a=2): process 'thk' failed" in proc.stdout
    assert (root / "summary.png").read_bytes()[:8] == PNG
    with open(root / "summary.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert json.loads((root / "0" / "run_summary.json").read_text())["status"] == "completed"


def test_igm_run_summary_of_a_missing_folder_is_one_line(tmp_path):
    proc = run_igm(["--summary", str(tmp_path / "nope")], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"igm_run: error: sweep folder not found: {tmp_path / 'nope'}"


def test_the_plot_title_wraps_long_shared_overrides():
    shared = {"+experiment=params", "processes.iceflow.physics.init_arrhenius=78",
              "processes.smb_simple.update_freq=1", "core.hardware.visible_gpus=auto"}
    lines = sweep.plot_title(4, shared).splitlines()
    assert len(lines) == 2 and all(len(line) <= 90 for line in lines)
    assert " ".join(lines) == "4 jobs: " + " ".join(sorted(shared))
    many = {f"processes.some_plugin.key_{i}={i}" for i in range(20)}
    lines = sweep.plot_title(2, many).splitlines()
    assert len(lines) == 3 and lines[-1].endswith(" ... (see summary.csv)")

"""The shipped Optuna example: calibrate the ELA of smb_simple on
Hintereisferner against a target volume change, with a sqlite study that a
second sweep resumes."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import run_igm

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                    reason="the Optuna sweeper is the 'sweepers' extra: "
                           "pip install 'igm-core[sweepers]'")

# two short trials per sweep (the example runs 20 trials over 2000-2020)
SHORT = ["+experiment=calibrate_ela", "processes.time.end=2004", "processes.time.save=2",
         "core.objective_target=-0.01", "hydra.sweeper.n_trials=2", "--multirun"]


def trials(db: Path) -> list[tuple[str, float, float]]:
    """(state, ELA, objective) of every trial of the study 'calibrate_ela'."""
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT t.state, p.param_value, v.value FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id "
            "JOIN trial_params p ON p.trial_id = t.trial_id "
            "JOIN trial_values v ON v.trial_id = t.trial_id "
            "WHERE s.study_name = 'calibrate_ela' ORDER BY t.number").fetchall()


def test_optuna_calibrates_the_ela_and_resumes_its_sqlite_study(tmp_path):
    first = run_igm(SHORT, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(trials(tmp_path / "calibrate_ela.db")) == 2
    second = run_igm(SHORT, tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    stored = trials(tmp_path / "calibrate_ela.db")
    assert len(stored) == 4 and {s for s, _, _ in stored} == {"COMPLETE"}
    assert all(3000 <= ela <= 3500 for _, ela, _ in stored)

    objectives = []
    for sweep in sorted(tmp_path.glob("multirun/*/*")):
        for path in sorted(sweep.glob("*/run_summary.json")):
            run = json.loads(path.read_text())
            change = run["volume_km3"] - run["volume_start_km3"]
            assert run["objective"] == pytest.approx(abs(change + 0.01), rel=1e-9)
            objectives.append(run["objective"])
        with open(sweep / "summary.csv", newline="") as fh:
            assert [r["status"] for r in csv.DictReader(fh)] == ["completed"] * 2
    # the study holds exactly the objectives the jobs returned
    assert sorted(objectives) == pytest.approx(sorted(v for _, _, v in stored))
    # the trials differ in ELA and so in volume change: the objective is informative
    assert len({round(v, 9) for v in objectives}) == 4
    best = yaml.safe_load((sorted(tmp_path.glob("multirun/*/*"))[-1]
                           / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(objectives))

"""A sweep on a local Ray cluster through the shipped ``ray_cluster`` preset
(Hydra's Ray launcher, the 'ray' extra)."""

from __future__ import annotations

import itertools

import pytest
from conftest import run_igm
from test_multirun import TINY, jobs, overlap, summary_rows, sweep_dir

pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                    reason="the Ray launcher is the 'ray' extra: pip install 'igm-core[ray]'")


def test_ray_local_cluster_runs_the_sweep_in_parallel(experiment_dir):
    cwd = experiment_dir("params", TINY)
    proc = run_igm(["+experiment=params", "processes.time.end=3,4",
                    "hydra/launcher=ray_cluster", "+hydra.launcher.ray.init.num_cpus=2",
                    "+hydra.launcher.ray.init.include_dashboard=false", "--multirun"], cwd,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = sweep_dir(cwd)
    runs = jobs(sweep)
    assert {k: (r["status"], r["t_end"]) for k, r in runs.items()} == {
        0: ("completed", 3.0), 1: ("completed", 4.0)}
    assert {r["threads"] for r in runs.values()} == {1}  # ray.remote.num_cpus
    assert any(overlap(a, b) and a["pid"] != b["pid"]
               for a, b in itertools.combinations(runs.values(), 2))
    assert set(summary_rows(sweep)) == {"0", "1"}

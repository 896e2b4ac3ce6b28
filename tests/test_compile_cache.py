"""``core.hardware.compile_cache``: TensorFlow's XLA compilation cache on
disk, one subfolder per machine kind, shared by runs; a cached run computes
exactly what an uncached one does."""

from __future__ import annotations

import json
import logging
import os
from importlib import metadata
from pathlib import Path

import netCDF4
import numpy as np
from conftest import run_igm

from igm_core import compile_cache

EMULATED = """
# @package _global_
defaults:
  - override /inputs: [local]
  - override /processes: [iceflow, time, thk]
  - override /outputs: [local]
processes:
  time:
    start: 2000.0
    end: 2002.0
    save: 1.0
core:
  progress: log
"""


def test_folder_is_per_tensorflow_version_and_machine(tmp_path):
    folder = compile_cache.cache_folder(str(tmp_path / "xla"))
    assert folder == tmp_path / "xla" / compile_cache.host_key()
    assert folder.is_dir()
    assert compile_cache.host_key().startswith(f"tf{metadata.version('tensorflow')}-")
    assert compile_cache.cache_folder("") is None


def test_auto_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_folder("auto") == (tmp_path / "igm-core" / "xla"
                                                  / compile_cache.host_key())


def test_a_folder_that_cannot_be_made_runs_without_a_cache(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="igm"):
        assert compile_cache.cache_folder(str(blocker / "xla")) is None
    assert "core.hardware.compile_cache: cannot create" in caplog.text


def test_enable_keeps_the_users_flags_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    compile_cache.enable(tmp_path)
    assert os.environ["TF_XLA_FLAGS"] == (f"--tf_xla_auto_jit=0 "
                                          f"--tf_xla_persistent_cache_directory={tmp_path}")
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/mine")
    compile_cache.enable(tmp_path)
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/mine"


def _fields(run_dir: Path) -> dict[str, np.ndarray]:
    with netCDF4.Dataset(run_dir / "output.nc") as ds:
        return {name: np.ma.filled(ds[name][:], np.nan) for name in ds.variables}


def test_runs_fill_and_reuse_the_cache_with_identical_results(experiment_dir, tmp_path):
    cwd = experiment_dir("emulated", EMULATED)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TF_XLA_FLAGS": ""}
    runs = {}
    for name, extra in (("cold", []), ("warm", []),
                        ("none", ["core.hardware.compile_cache=''"])):
        proc = run_igm(["+experiment=emulated", f"hydra.run.dir=out_{name}", *extra], cwd,
                       env=env)
        assert proc.returncode == 0, proc.stderr
        runs[name] = cwd / f"out_{name}"
        summary = json.loads((runs[name] / "run_summary.json").read_text())
        expected = None if name == "none" else str(tmp_path / "cache" / "igm-core" / "xla"
                                                   / compile_cache.host_key())
        assert summary["compile_cache"] == expected
        if name == "cold":  # the energy's XLA executables were written there
            assert list(Path(expected).glob("xla_compile_cache*")), "cache left empty"
    cold, warm, none = (_fields(runs[k]) for k in ("cold", "warm", "none"))
    assert "velsurf_mag" in cold and np.nanmax(cold["velsurf_mag"]) > 0
    for other in (warm, none):
        for name, values in cold.items():
            np.testing.assert_array_equal(values, other[name], err_msg=name)

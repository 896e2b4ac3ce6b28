"""TensorFlow's start: silent, without Keras (which TensorFlow imports
eagerly and igm-core does not use; Keras still loads when a plugin asks),
and no function traced over and over."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

START_THEN_KERAS = """
import sys
from igm_core.quiet import start_tensorflow
start_tensorflow()
print("after start:", "keras" in sys.modules, "matplotlib" in sys.modules)
import tensorflow as tf
layer = tf.keras.layers.Dense(3)
print("layer:", layer(tf.ones((2, 4))).shape)
import keras
print("adam:", keras.optimizers.Adam.__name__)
"""


def test_tensorflow_starts_without_keras_and_keras_still_loads_on_first_use():
    proc = subprocess.run([sys.executable, "-c", START_THEN_KERAS], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["after start: False False", "layer: (2, 3)",
                                        "adam: Adam"]


RUN_THEN_REPORT = """
import atexit, sys
atexit.register(lambda: print("keras imported:", "keras" in sys.modules))
sys.argv = ["igm_run", "+experiment=hef", "core.progress=off"]
from igm_core.app import main
main()
"""

HEF = f"""
# @package _global_
defaults:
  - override /inputs: [local]
  - override /processes: [smb_simple, iceflow, time, thk, vert_flow, particles]
  - override /outputs: [local]
inputs:
  local:
    filename: {ROOT}/plugins/data/hintereisferner/input.nc
    coarsening:
      ratio: 4
processes:
  time:
    start: 1900.0
    end: 1902.0
    save: 1.0
"""


def test_a_run_with_every_builtin_process_never_imports_keras(experiment_dir):
    cwd = experiment_dir("hef", HEF)
    proc = subprocess.run([sys.executable, "-c", RUN_THEN_REPORT], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "keras imported: False"
    assert list(cwd.glob("outputs/*/*/output.nc"))


def test_a_run_traces_each_function_once(experiment_dir):
    """TensorFlow warns when a function is retraced again and again (each
    trace costs 10-20 ms or more); a run at DEBUG level, which shows
    TensorFlow's warnings, must not log one."""
    cwd = experiment_dir("hef", HEF)
    proc = subprocess.run([sys.executable, "-m", "igm_core", "+experiment=hef",
                           "core.logging_level=DEBUG"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log,) = cwd.glob("outputs/*/*/igm.log")
    text = log.read_text()
    assert "first step" in text and "retracing" not in text + proc.stderr

"""Start TensorFlow without its start-up chatter.

TensorFlow 2.20+ logs through absl before its logging is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` does not silence the oneDNN and CUDA-driver lines it
prints when it loads and when it first lists devices. Those lines are
written straight to file descriptor 2; :func:`start_tensorflow` sends that
descriptor to /dev/null while TensorFlow loads and initialises its devices,
then restores it. Later messages go through TensorFlow's Python logger,
set to errors only.

TensorFlow's ``__init__`` also imports Keras eagerly (``keras.src.optimizers``,
so that Keras optimizers are registered before a SavedModel is loaded):
about 0.6 s and a thousand modules, matplotlib among them, on every start.
igm-core uses no Keras, so :func:`start_tensorflow` refuses that one import
while TensorFlow loads (TensorFlow skips it on ImportError); ``tf.keras``
and ``import keras`` still load Keras, in full, on first use.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def muted_stderr() -> Iterator[None]:
    """Send file descriptor 2 (C and Python stderr) to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


KERAS_PRELOAD = "keras.src.optimizers"  # what TensorFlow's __init__ imports eagerly


@contextmanager
def keras_not_preloaded() -> Iterator[None]:
    """While TensorFlow is first imported, make its eager import of
    :data:`KERAS_PRELOAD` fail (a None entry in ``sys.modules``); the entry
    is removed afterwards, so Keras imports normally later. Does nothing
    when TensorFlow or Keras is already imported."""
    if "tensorflow" in sys.modules or KERAS_PRELOAD in sys.modules:
        yield
        return
    sys.modules[KERAS_PRELOAD] = None
    try:
        yield
    finally:
        if KERAS_PRELOAD in sys.modules and sys.modules[KERAS_PRELOAD] is None:
            del sys.modules[KERAS_PRELOAD]


def quiet_tensorflow(debug: bool) -> None:
    """Set TensorFlow's C++ log level for this process (and its children,
    e.g. a job's fresh process): errors only, or everything when ``debug``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")


def start_tensorflow(quiet: bool = True) -> None:
    """Import TensorFlow and initialise its devices; silently unless
    ``quiet`` is false (debug logging)."""
    quiet_tensorflow(debug=not quiet)
    if not quiet:
        with keras_not_preloaded():
            import tensorflow  # noqa: F401
        return
    with muted_stderr(), keras_not_preloaded():
        import tensorflow as tf

        tf.config.list_logical_devices()
    tf.get_logger().setLevel(logging.ERROR)

"""Devices and threads, set before TensorFlow is imported."""

from __future__ import annotations

import logging
import os
import sys

from igm_core.config import HardwareParams
from igm_core.errors import ConfigError

log = logging.getLogger("igm")


def quiet_tensorflow(debug: bool) -> None:
    """Silence TensorFlow's C++ start-up chatter unless ``debug``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")


def gpu_list(hw: HardwareParams) -> list[int] | None:
    """The GPU indices asked for, or None for "leave as is" / "auto"."""
    value = hw.visible_gpus
    if value is None or value == "auto":
        return None
    if isinstance(value, int):
        return [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError("core.hardware.visible_gpus must be a list of GPU indices, [] or "
                          f"'auto', got {value!r}") from None


def configure(hw: HardwareParams) -> None:
    """Apply ``core.hardware`` to the environment (CUDA_VISIBLE_DEVICES,
    thread counts) before TensorFlow starts."""
    gpus = gpu_list(hw)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus) or "-1"
        if "tensorflow" in sys.modules:
            log.warning("TensorFlow was already started in this process: "
                        "core.hardware.visible_gpus may not apply")
    if hw.threads > 0:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(hw.threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def devices() -> list[str]:
    """Devices TensorFlow sees, or ['cpu'] when TensorFlow was not started."""
    if "tensorflow" not in sys.modules:
        return ["cpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.get_visible_devices()]

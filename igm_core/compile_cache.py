"""TensorFlow's XLA compilation cache on disk, shared by runs and sweep jobs.

The ice flow's energy and its gradient are compiled with XLA at a run's
first step (1 to 2 s on 2 CPU cores at 100 m). With
``--tf_xla_persistent_cache_directory`` in ``TF_XLA_FLAGS`` TensorFlow
writes each compiled function to that folder and later processes load it
instead of compiling again (TensorFlow keys the entries by the function
and its input shapes). TensorFlow reads the flag when it starts, so it is
set with the devices and threads, before TensorFlow starts.

A compiled function is machine code for the processor (and GPU) it was
built on; one home folder is often shared by the different nodes of a
cluster. The cache folder therefore has one subfolder per TensorFlow
version, processor model and flags and GPU models.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from importlib import metadata
from pathlib import Path

log = logging.getLogger("igm")

FLAG = "--tf_xla_persistent_cache_directory"
_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly")


def default_root() -> Path:
    """``$XDG_CACHE_HOME/igm-core/xla``, else ``~/.cache/igm-core/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "igm-core" / "xla"


def _tensorflow_version() -> str:
    for name in _DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def cpuinfo() -> dict[str, str]:
    """The fields of /proc/cpuinfo (the first processor's value of each,
    such as ``model name`` or ``flags``, the instruction-set extensions);
    empty off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _hardware_description() -> str:
    """Processor model and instruction-set flags, and the NVIDIA GPU models,
    as the operating system lists them (no TensorFlow needed)."""
    lines = [platform.machine()]
    fields = cpuinfo()
    if fields:
        lines += [f"{key}: {fields[key]}" for key in ("model name", "flags", "Features", "CPU part")
                  if key in fields]
    else:
        lines.append(platform.processor())
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        for info in sorted(gpus.glob("*/information")):
            lines += [line for line in info.read_text(errors="replace").splitlines()
                      if line.startswith("Model:")]
    return "\n".join(lines)


def host_key() -> str:
    """The subfolder name for this machine: TensorFlow version, machine
    type and a digest of the processor and GPU models and flags."""
    digest = hashlib.sha256(_hardware_description().encode()).hexdigest()[:12]
    return f"tf{_tensorflow_version()}-{platform.machine()}-{digest}"


def cache_folder(setting: str) -> Path | None:
    """The folder for ``core.hardware.compile_cache``: ``auto`` for
    :func:`default_root`, '' for none, else that folder (``~`` expanded,
    relative to the working directory); each with the :func:`host_key`
    subfolder. None when it is off or cannot be created (logged)."""
    if not setting:
        return None
    root = default_root() if setting == "auto" else Path(setting).expanduser().absolute()
    folder = root / host_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("core.hardware.compile_cache: cannot create %s (%s): compiling without "
                    "a cache", folder, exc.strerror or exc)
        return None
    return folder


def enable(folder: Path) -> None:
    """Add the cache ``folder`` to ``TF_XLA_FLAGS`` for TensorFlow to read
    when it starts, unless the variable already names a cache folder."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()

"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is one ``.npz`` file (a zip of NumPy arrays, read with
``allow_pickle=False``) in the run folder's ``checkpoints/``, written
atomically. It holds the clock, every State field with its metadata, every
plugin's memory (see :mod:`igm_core.hookspecs`), the run's volume series and
a fingerprint of what the run is (grid, selected plugins and their
versions). Arrays keep their dtype and bits; everything else goes in a JSON
manifest stored in the same file. No TensorFlow import unless a checkpoint
holds tensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import igm_core
from igm_core.context import PluginInfo
from igm_core.errors import ConfigError, DataError, PluginError
from igm_core.files import atomic_path
from igm_core.state import Field, State

FOLDER = "checkpoints"
FORMAT = "igm-checkpoint"
VERSION = 1
_MANIFEST = "__manifest__"
_NAME = re.compile(r"checkpoint_(\d+)\.npz$")


# -- encoding of nested values ----------------------------------------------


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("tensorflow") and hasattr(value, "numpy")


class _Encoder:
    """Turns nested values into a JSON description plus named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value: np.ndarray, kind: str) -> dict[str, Any]:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.array(value, order="C")
        return {kind: key}

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"value": value}
        if isinstance(value, np.generic):
            return self.array(np.asarray(value), "scalar")
        if isinstance(value, np.ndarray):
            return self.array(value, "ndarray")
        if _is_tensor(value):
            kind = "variable" if type(value).__name__.endswith("Variable") else "tensor"
            return self.array(value.numpy(), kind)
        if isinstance(value, np.random.Generator):
            bit = value.bit_generator
            return {"generator": type(bit).__name__, "state": bit.state}
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise PluginError(f"{where}: checkpoint keys must be strings, got {bad[0]!r}")
            return {"dict": {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}}
        if isinstance(value, (list, tuple)):
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, Path):
            return {"path": str(value)}
        raise PluginError(f"{where}: cannot be written into a checkpoint ({type(value).__name__}); "
                          "state_dict() may hold numbers, strings, lists, dicts, NumPy arrays, "
                          "TensorFlow tensors and NumPy random generators")


def _decode(node: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    if "generator" in node:
        bit = getattr(np.random, node["generator"])()
        bit.state = node["state"]
        return np.random.Generator(bit)
    ((kind, value),) = node.items()
    if kind == "value":
        return value
    if kind in ("scalar", "ndarray"):
        array = np.array(arrays[value])
        return array[()] if kind == "scalar" else array
    if kind in ("tensor", "variable"):
        import tensorflow as tf

        tensor = tf.constant(arrays[value])
        return tf.Variable(tensor) if kind == "variable" else tensor
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "path":
        return Path(value)
    raise DataError(f"unknown entry kind {kind!r} in a checkpoint")


# -- plugin memories ---------------------------------------------------------


def _savable(memory: Any) -> bool:
    return (memory is None or isinstance(memory, dict)
            or (hasattr(memory, "state_dict") and hasattr(memory, "load_state_dict"))
            or (dataclasses.is_dataclass(memory) and not isinstance(memory, type)))


def check_memory(label: str, memory: Any) -> None:
    """PluginError, when a plugin starts, for a memory that no checkpoint
    could hold."""
    if not _savable(memory):
        raise PluginError(f"{label} returned a {type(memory).__name__} from its initialize "
                          "hook: a plugin's memory needs state_dict() and load_state_dict(), or "
                          "to be a dataclass or a dict, so that checkpoints can hold it")


def memory_state(label: str, memory: Any) -> Any:
    """What is saved of a plugin's memory: ``memory.state_dict()``, the
    fields of a dataclass, a dict's items, or None when the plugin keeps
    nothing."""
    check_memory(label, memory)
    if memory is None or isinstance(memory, dict):
        return memory
    if hasattr(memory, "state_dict"):
        return memory.state_dict()
    return {f.name: getattr(memory, f.name) for f in dataclasses.fields(memory)}


def restore_memory(label: str, memory: Any, saved: Any) -> None:
    """Give a plugin's memory back the state :func:`memory_state` saved."""
    if saved is None and memory is None:
        return
    if memory is None or saved is None:
        what = "keeps nothing now" if memory is None else "kept nothing then"
        raise ConfigError(f"the checkpoint does not fit {label}: it {what} between steps")
    check_memory(label, memory)
    if hasattr(memory, "load_state_dict"):
        memory.load_state_dict(saved)
        return
    if isinstance(memory, dict):  # the plugin holds this very object: refill it
        memory.clear()
        memory.update(saved)
        return
    names = {f.name for f in dataclasses.fields(memory)}
    if set(saved) != names:
        raise ConfigError(f"the checkpoint does not fit {label}: it saved {sorted(saved)}, the "
                          f"plugin keeps {sorted(names)}")
    for name, value in saved.items():
        setattr(memory, name, value)


# -- the checkpoint -----------------------------------------------------------


def fingerprint(state: State, plugins: Iterable[PluginInfo]) -> dict[str, Any]:
    """What a checkpoint must share with the run that continues from it:
    the grid (shape, first cell centre and cell size, m) and the selected
    plugins, in order, with their distributions and versions."""
    ny, nx = state.grid.shape
    return {"grid": {"ny": ny, "nx": nx, "x0": float(state.x[0]), "y0": float(state.y[0]),
                     "dx": float(state.dx)},
            "plugins": [f"{p.stage}.{p.name} ({p.distribution} {p.version})" for p in plugins]}


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """One phrase naming how two fingerprints differ, or '' when they match."""
    g0, g1 = saved["grid"], current["grid"]
    if (g0["ny"], g0["nx"]) != (g1["ny"], g1["nx"]):
        return f"grid {g0['ny']} x {g0['nx']} cells there, {g1['ny']} x {g1['nx']} here"
    for key in ("dx", "x0", "y0"):
        if not math.isclose(g0[key], g1[key], rel_tol=1e-9, abs_tol=1e-6):
            return f"grid {key} {g0[key]:g} m there, {g1[key]:g} m here"
    p0, p1 = list(saved["plugins"]), list(current["plugins"])
    if p0 != p1:
        names0 = [p.split(" (")[0] for p in p0]
        names1 = [p.split(" (")[0] for p in p1]
        if names0 != names1:
            return f"plugins [{', '.join(names0)}] there, [{', '.join(names1)}] here"
        a, b = next((a, b) for a, b in zip(p0, p1, strict=True) if a != b)
        return f"{a} there, {b.split(' (', 1)[1].rstrip(')')} here"
    return ""


@dataclass
class Checkpoint:
    """A checkpoint read back: ``clock`` (t, dt, it, t_end in yr, saveresult),
    ``grid`` (x, y in m), ``fields`` (name -> array, or dict of arrays),
    ``metadata`` (name -> Field), ``memories`` (``stage.name`` -> saved
    state), ``result`` (series and start figures of the run) and
    ``fingerprint``."""

    path: Path
    clock: dict[str, Any]
    grid: tuple[np.ndarray, np.ndarray]
    fields: dict[str, Any]
    metadata: dict[str, Field]
    memories: dict[str, Any]
    result: dict[str, Any]
    fingerprint: dict[str, Any]
    written_at: float = 0.0
    written_by: str = ""

    def check_fits(self, current: Mapping[str, Any]) -> None:
        """ConfigError naming the first difference with the run's fingerprint."""
        diff = differences(self.fingerprint, current)
        if diff:
            raise ConfigError(f"checkpoint {self.path} is from another configuration: {diff}")

    def restore_state(self, state: State) -> None:
        """Set the grid (when the State has none), every field with its
        metadata, and the clock except ``t_end`` (the configuration's end)."""
        if state.grid is None:
            state.set_grid(*self.grid)
        for meta in self.metadata.values():
            state.declare(meta)
        for name, value in self.fields.items():
            setattr(state, name, value)
        for key in ("t", "dt", "it", "saveresult"):
            setattr(state, key, self.clock[key])


def save(path: Path, state: State, memories: Mapping[str, Any], labels: Mapping[str, str],
         result: Mapping[str, Any], fingerprint_: Mapping[str, Any]) -> Path:
    """Write a checkpoint of ``state`` and the plugins' ``memories``
    (``stage.name`` -> memory object; ``labels`` names them in errors) to
    ``path``, atomically."""
    enc = _Encoder()
    manifest = {
        "format": FORMAT, "version": VERSION, "written_by": f"igm-core {igm_core.__version__}",
        "written_at": time.time(), "fingerprint": dict(fingerprint_),
        "clock": {"t": float(state.t), "dt": float(state.dt), "it": int(state.it),
                  "t_end": float(state.t_end), "saveresult": bool(state.saveresult)},
        "grid": enc.encode((state.x, state.y), "grid"),
        "fields": {name: enc.encode(value, f"State field '{name}'")
                   for name, value in state.fields.items()},
        "metadata": {name: dataclasses.asdict(meta) for name, meta in state.declared().items()},
        "memories": {key: enc.encode(memory_state(labels[key], memory), labels[key])
                     for key, memory in memories.items()},
        "result": enc.encode(dict(result), "run result"),
    }
    enc.arrays[_MANIFEST] = np.array(json.dumps(manifest))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **enc.arrays)
    return path


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint file; DataError naming it when it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        manifest = json.loads(str(arrays.pop(_MANIFEST)))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a readable igm checkpoint ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DataError(f"{path}: not an igm checkpoint of version {VERSION}")
    x, y = _decode(manifest["grid"], arrays)
    return Checkpoint(
        path=path, clock=manifest["clock"], grid=(x, y),
        fields={k: _decode(v, arrays) for k, v in manifest["fields"].items()},
        metadata={k: Field(**{**v, "dims": tuple(v["dims"])})
                  for k, v in manifest["metadata"].items()},
        memories={k: _decode(v, arrays) for k, v in manifest["memories"].items()},
        result=_decode(manifest["result"], arrays), fingerprint=manifest["fingerprint"],
        written_at=manifest["written_at"], written_by=manifest["written_by"])


def numbered(folder: Path) -> list[Path]:
    """The checkpoint files in ``folder``, oldest (lowest step) first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run folder, or None."""
    files = numbered(Path(run_dir) / FOLDER)
    return files[-1] if files else None


def resolve(path: str | Path, launch_dir: Path) -> Path:
    """``core.restart``: a checkpoint file, or a run folder (or its
    ``checkpoints`` folder) meaning its latest checkpoint (relative paths from
    the launch folder)."""
    target = Path(path).expanduser()
    target = target if target.is_absolute() else launch_dir / target
    if target.is_file():
        return target
    if target.is_dir():
        found = latest(target) or next(reversed(numbered(target)), None)
        if found is None:
            raise ConfigError(f"core.restart: no checkpoint in {target} (looked for "
                              f"{FOLDER}/checkpoint_*.npz)")
        return found
    raise ConfigError(f"core.restart: {target} is neither a checkpoint file nor a run folder")


def file_for(run_dir: Path, step: int) -> Path:
    """Where the checkpoint at ``step`` goes."""
    return Path(run_dir) / FOLDER / f"checkpoint_{step:09d}.npz"


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints of a run folder."""
    for old in numbered(Path(run_dir) / FOLDER)[:-keep]:
        old.unlink(missing_ok=True)

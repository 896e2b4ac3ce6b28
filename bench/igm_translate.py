"""Translate an experiment written for this project (IGM 3.0 format) into one
that the published IGM 3.2.1 accepts.

IGM 3.2.1 renamed or merged several modules and keys; :func:`to_igm321`
returns the translated experiment together with one human-readable line per
change, so the benchmark can print exactly what it altered. Pure Python (no
TensorFlow, no Hydra): the input and output are plain nested dicts as read
from / written to YAML.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

# Our key (relative to processes.<name>) -> IGM 3.2.1 key, per process.
RENAMED_KEYS: dict[str, dict[str, str]] = {
    "iceflow": {
        "physics.init_arrhenius": "physics.viscosity.arrhenius",
        "physics.exp_glen": "physics.viscosity.exponent",
        "physics.regu_glen": "physics.viscosity.regularization",
        "physics.enhancement_factor": "physics.viscosity.enhancement_factor",
        "physics.init_slidingco": "physics.sliding.slidingco",
        "physics.exp_weertman": "physics.sliding.exponent",
        "physics.regu_weertman": "physics.sliding.regularization",
    },
    "particles": {
        "frequency_seeding": "seeding.frequency",
        "density_seeding": "seeding.density",
        "tracking_method": "tracking.method",
    },
}

# Our core.* keys that IGM 3.2.1 does not know (dropped).
OURS_ONLY_CORE_KEYS = ("progress", "objective", "objective_target", "logging_level")

STAGE_OVERRIDES = {"override /inputs": "inputs", "override /processes": "processes",
                   "override /outputs": "outputs"}


@dataclass
class Translation:
    """An IGM 3.2.1 experiment (``experiment``, a dict for YAML), the lines
    describing each change (``notes``), and the data files IGM must find in
    its ``core.folder_data`` (``data_files``: original names as written in
    our experiment, e.g. ``pkg://...``), and the variables to leave out of
    IGM's copies of them (``drop_variables``)."""

    experiment: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    data_files: list[str] = field(default_factory=list)
    drop_variables: list[str] = field(default_factory=list)


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _pop(tree: dict[str, Any], dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node.pop(leaf, None) if isinstance(node, dict) else None


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``dotted = "a.b.c"``, creating dicts."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def module_lists(experiment: dict[str, Any]) -> dict[str, list[str]]:
    """The plugin lists of an experiment's ``defaults`` (stage -> names)."""
    lists: dict[str, list[str]] = {}
    for item in experiment.get("defaults", []):
        if isinstance(item, dict):
            for key, value in item.items():
                if key in STAGE_OVERRIDES:
                    lists[STAGE_OVERRIDES[key]] = list(value)
    return lists


def set_module_lists(experiment: dict[str, Any], lists: dict[str, list[str]]) -> None:
    """Write ``lists`` (stage -> names) into the experiment's ``defaults``."""
    experiment["defaults"] = [{f"override /{stage}": names} for stage, names in lists.items()]


def to_igm321(ours: dict[str, Any], igm_default_method: str = "unified",
              ours_masks_smb: bool = False) -> Translation:
    """Translate our experiment dict into IGM 3.2.1's format.

    Raises ValueError for what IGM 3.2.1 cannot run (e.g. our ``sia`` ice
    flow). ``igm_default_method`` names IGM's default ice-flow method, used
    only in the notes. ``ours_masks_smb``: whether our smb_simple, like IGM
    3.2.1's smb, replaces positive SMB outside ``icemask``; when not, IGM's
    input copy loses ``icemask`` so that both compute the same SMB.
    """
    exp = copy.deepcopy(ours)
    out = Translation(exp)
    note = out.notes.append
    lists = module_lists(exp)
    procs = lists.get("processes", [])
    processes = exp.setdefault("processes", {}) or {}
    exp["processes"] = processes

    if "smb_simple" in procs:
        procs[procs.index("smb_simple")] = "smb"
        simple = processes.pop("smb_simple", None) or {}
        processes["smb"] = {"method": "simple", "simple": simple}
        note("process smb_simple -> process smb with processes.smb.method: simple; "
             "processes.smb_simple.* -> processes.smb.simple.* (array, file, update_freq)")
        if ours_masks_smb:
            note("icemask kept: outside it, IGM 3.2.1's smb turns a positive SMB into "
                 "smb_outside_icemask (-10 m/yr), ours into 0 (mask_accumulation)")
        else:
            out.drop_variables.append("icemask")
            note("icemask left out of IGM's copy of the input: IGM 3.2.1's smb sets positive "
                 "SMB outside icemask to smb_outside_icemask (-10 m/yr), ours (like IGM 3.0's "
                 "smb_simple) does not; without icemask both compute the same SMB")

    if "vert_flow" in procs:
        procs.remove("vert_flow")
        extra = processes.pop("vert_flow", None)
        set_key(processes, "iceflow.vertical_velocity.enabled", True)
        note("process vert_flow removed (IGM 3.2.1 has none): "
             "processes.iceflow.vertical_velocity.enabled: true"
             + (f" (its settings {sorted(extra)} dropped)" if extra else ""))
    elif "particles" in procs and _get(processes, "iceflow.vertical_velocity.enabled") is None:
        set_key(processes, "particles.tracking.method", "simple")
        note("no vertical velocity without vert_flow: processes.particles.tracking.method: simple")

    for proc, table in RENAMED_KEYS.items():
        section = processes.get(proc)
        if not isinstance(section, dict):
            continue
        for old, new in table.items():
            value = _pop(section, old)
            if value is not None:
                set_key(section, new, value)
                note(f"processes.{proc}.{old} -> processes.{proc}.{new}")

    method = _get(processes, "iceflow.method")
    if method == "sia":
        raise ValueError("processes.iceflow.method: sia has no IGM 3.2.1 counterpart")
    if "iceflow" in procs and method is None:
        note(f"ice flow: IGM's default method '{igm_default_method}' (CNN trained from scratch "
             "at start, Nz=4 unless processes.iceflow.numerics.Nz is set)")

    filename = _get(exp, "inputs.local.filename")
    if filename is not None:
        base = PurePath(str(filename).removeprefix("pkg://")).name
        set_key(exp, "inputs.local.filename", base)
        out.data_files.append(str(filename))
        note(f"inputs.local.filename {filename} -> {base}, copied into core.folder_data "
             "(IGM reads its inputs from core.folder_data, default data/)")

    core = exp.get("core")
    if isinstance(core, dict):
        for key in OURS_ONLY_CORE_KEYS:
            if key in core:
                core.pop(key)
                note(f"core.{key} dropped (no IGM 3.2.1 counterpart)")
        hw = core.get("hardware")
        if isinstance(hw, dict) and "threads" in hw:
            hw.pop("threads")
            note("core.hardware.threads dropped (IGM 3.2.1 leaves TensorFlow's threads as is)")

    lists["processes"] = procs
    set_module_lists(exp, lists)
    note("module lists written in the experiment file (IGM 3.2.1 reads them only from there, "
         "not from command-line overrides)")
    return out


def translate_override(key: str) -> str:
    """Translate one dotted command-line key (``processes.x.y``) the same way
    as :func:`to_igm321` translates experiment files."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[0] == "processes":
        proc, rest = parts[1], ".".join(parts[2:])
        if proc == "smb_simple":
            return f"processes.smb.simple.{rest}"
        if rest in RENAMED_KEYS.get(proc, {}):
            return f"processes.{proc}.{RENAMED_KEYS[proc][rest]}"
    return key

"""``igm_run --resume FOLDER``: run a sweep, or a single run, again in its
own folder(s), from the overrides Hydra recorded there.

In a sweep folder (``multirun.yaml``) the sweep is launched again with its
sweep overrides and launcher settings into the same folder; in a run folder
(``.hydra/hydra.yaml``) the run is started again there. Each job then does
what its folder calls for (:mod:`igm_core.runfolder`): a completed job
returns its result without running, an interrupted, killed or failed one
continues from its latest checkpoint, a job that never started runs. The
sweep summary is rebuilt at the end. Overrides given after the folder
(``igm_run --resume DIR hydra/launcher=slurm_cpu core.retries=2``) replace
the recorded ones with the same key. No Hydra import here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from igm_core.errors import ConfigError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_DROPPED = ("hydra.mode", "hydra.sweep.dir", "hydra.run.dir")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _merge(recorded: list[str], given: list[str]) -> list[str]:
    keys = {_key(o) for o in given}
    return [o for o in recorded if _key(o) not in keys and _key(o) not in _DROPPED] + given


def _hydra_node(path: Path) -> dict[str, Any]:
    import yaml

    try:
        return (yaml.safe_load(path.read_text()) or {})["hydra"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"igm_run --resume: cannot read Hydra's record {path}: {exc}") from None


def arguments(argv: list[str]) -> list[str]:
    """The ``igm_run`` arguments that resume the folder named after
    ``--resume`` in ``argv`` (the other arguments are added as overrides);
    changes to the original launch folder, where the experiment files and
    data are."""
    index = argv.index("--resume")
    if index + 1 >= len(argv) or argv[index + 1].startswith("-"):
        raise ConfigError("igm_run --resume needs a folder: a sweep (multirun/DATE/TIME) or a "
                          "run (outputs/DATE/TIME)")
    folder = Path(argv[index + 1]).expanduser().resolve()
    given = argv[:index] + argv[index + 2:]
    if (folder / "multirun.yaml").is_file():
        hydra = _hydra_node(folder / "multirun.yaml")
        sweeper = str((hydra.get("sweeper") or {}).get("_target_", ""))
        if sweeper != BASIC_SWEEPER:
            raise ConfigError(f"igm_run --resume: {folder} was swept by {sweeper}, not Hydra's "
                              "basic sweeper; an Optuna study resumes from its storage when "
                              "the same command runs again")
        where, mode = f"hydra.sweep.dir={folder}", ["--multirun"]
    elif (folder / ".hydra" / "hydra.yaml").is_file():
        hydra = _hydra_node(folder / ".hydra" / "hydra.yaml")
        where, mode = f"hydra.run.dir={folder}", []
    else:
        raise ConfigError(f"igm_run --resume: {folder} is neither a sweep folder (with "
                          "multirun.yaml) nor a run folder (with .hydra/hydra.yaml)")
    overrides = hydra.get("overrides") or {}
    args = _merge(list(overrides.get("hydra") or []) + list(overrides.get("task") or []), given)
    cwd = Path(str((hydra.get("runtime") or {}).get("cwd", "")))
    if cwd.is_dir():
        os.chdir(cwd)
    return [*args, where, *mode]

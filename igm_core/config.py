"""The core's own parameters (``core.*``), dataclass schemas that check
themselves.

Registered in Hydra's ConfigStore by ``igm_core.app`` so keys and types are
validated like every plugin's ``Params``; choices are Enums and ranges are
checked in ``__post_init__``, which runs when the configuration is turned
into these objects, before TensorFlow starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from igm_core.errors import ConfigError


class Choice(str, Enum):
    """Base of a parameter's choices. Subclass it with one member per
    choice, each named as its value (``solved = "solved"``), and type the
    Params field with the subclass: Hydra then refuses any other value when
    the configuration is composed, listing the allowed ones, and plugin code
    compares and prints the member as its text (``method == "solved"``)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ProgressMode(Choice):
    """How the time loop shows its progress."""

    auto = "auto"  # a bar on an interactive terminal outside a sweep, else log lines
    bar = "bar"
    log = "log"
    off = "off"


class Objective(Choice):
    """The number a job returns to Hydra's sweepers."""

    volume = "volume"  # final ice volume (km3)
    area = "area"  # final ice area (km2)
    volume_change = "volume_change"  # final minus initial volume (km3)
    volume_change_misfit = "volume_change_misfit"  # |volume_change - objective_target| (km3)


def logging_level(value: Any, key: str = "core.logging_level") -> int:
    """A logging level from a name in any case (``warning``) or one of
    Python's numeric levels 0-50 (``30``, also as text); ConfigError
    otherwise."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        number = int(text)
        if 0 <= number <= 50:
            return number
    elif isinstance(logging.getLevelName(text.upper()), int):
        return int(logging.getLevelName(text.upper()))
    raise ConfigError(f"{key}: unknown level {value!r} (expected DEBUG, INFO, WARNING, ERROR, "
                      "CRITICAL in any case, or a number from 0 to 50 such as 30)")


@dataclass
class HardwareParams:
    # GPUs TensorFlow may see: a list of indices ([0], [0, 1]), [] for CPU
    # only, "auto" to give parallel jobs one GPU each round-robin by job
    # number, or null to leave the environment as it is.
    visible_gpus: Any = None
    # TensorFlow intra-op threads per run (0: TensorFlow's default in a
    # single run, the job's share of the cores in a parallel sweep).
    threads: int = 0
    # Folder where TensorFlow keeps the functions it compiled with XLA, for
    # later runs and sweep jobs on the same kind of machine to load instead
    # of compiling ('auto': $XDG_CACHE_HOME/igm-core/xla, by default
    # ~/.cache/igm-core/xla; '' for none). One subfolder per TensorFlow
    # version and processor (and GPU) model.
    compile_cache: str = "auto"

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"core.hardware.threads must be 0 or more, got {self.threads}")


@dataclass
class CheckpointParams:
    every_years: float = 0.0  # simulated years between checkpoints (yr; 0: by wall time only)
    every_minutes: float = 10.0  # wall-clock minutes between checkpoints (min; 0: never)
    keep: int = 2  # checkpoints kept in the run folder (older ones are deleted)
    at_end: bool = True  # write one when the run completes (to extend it later)

    def __post_init__(self) -> None:
        for key in ("every_years", "every_minutes"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"core.checkpoint.{key} must be 0 or more, got "
                                  f"{getattr(self, key)}")
        if self.keep < 1:
            raise ConfigError(f"core.checkpoint.keep must be at least 1, got {self.keep}")


@dataclass
class CoreParams:
    url_data: str = ""  # zip or netCDF fetched once into folder_data (http(s)://, file://)
    url_data_timeout_s: float = 600.0  # overall wall-clock limit of that download (s)
    url_data_max_mb: float = 1024.0  # largest download and unpacked zip, in MB of 1e6 bytes
    url_data_sha256: str = ""  # expected sha256 of the download (64 hex digits; '' = any)
    folder_data: str = "data"  # data folder, relative to the launch folder
    logging: bool = True  # log the run's progress (false: warnings only)
    # DEBUG, INFO, WARNING, ERROR, CRITICAL in any case, or Python's number (10 to 50)
    logging_level: str = "INFO"
    logging_file: str = ""  # an extra log file ('' = only the run's igm.log)
    print_params: bool = False  # log the resolved parameters at start (see config_resolved.yaml)
    print_comp: bool = True  # log the per-plugin timing table at the end
    progress: ProgressMode = ProgressMode.auto  # auto, bar, log or off
    # Number the job returns (for sweepers): volume (final, km3), area
    # (final, km2), volume_change (km3), volume_change_misfit (|change - target|)
    objective: Objective = Objective.volume
    objective_target: float = 0.0  # target of volume_change_misfit (km3)
    # Continue from a checkpoint: a checkpoint file, or a run folder (its
    # latest checkpoint); '' starts afresh, or continues the interrupted run
    # already in this run folder
    restart: str = ""
    # A failed job of a sweep is run again up to this many times (not for
    # configuration or input errors, which would fail the same way)
    retries: int = 0
    checkpoint: CheckpointParams = field(default_factory=CheckpointParams)
    hardware: HardwareParams = field(default_factory=HardwareParams)

    def __post_init__(self) -> None:
        self.level = logging_level(self.logging_level)
        if self.retries < 0:
            raise ConfigError(f"core.retries must be 0 or more, got {self.retries}")
        for key in ("url_data_timeout_s", "url_data_max_mb"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"core.{key} must be more than 0, got {getattr(self, key)}")
        digest = self.url_data_sha256
        if digest and not (len(digest) == 64 and set(digest) <= set("0123456789abcdefABCDEF")):
            raise ConfigError(f"core.url_data_sha256: expected '' or 64 hexadecimal digits, got "
                              f"{digest!r}")


RESULT_NEUTRAL_KEYS = ("core.url_data_timeout_s", "core.url_data_max_mb", "core.logging",
                       "core.logging_level", "core.logging_file", "core.print_params",
                       "core.print_comp", "core.progress", "core.restart", "core.retries",
                       "core.checkpoint", "core.hardware")
"""Keys that change how a run is carried out or reported, not its results:
a run folder holding a run that differs only in these holds the same run."""

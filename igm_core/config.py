"""The core's own parameters (``core.*``), a plain dataclass schema.

Registered in Hydra's ConfigStore by ``igm_core.app`` so keys and types are
validated like every plugin's ``Params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HardwareParams:
    # GPUs TensorFlow may see: a list of indices ([0], [0, 1]), [] for CPU
    # only, "auto" to give parallel jobs one GPU each round-robin by job
    # number, or null to leave the environment as it is.
    visible_gpus: Any = None
    # TensorFlow intra-op threads per run (0: TensorFlow's default in a
    # single run, the job's share of the cores in a parallel sweep).
    threads: int = 0


@dataclass
class CoreParams:
    url_data: str = ""  # zip or netCDF fetched once into folder_data (http(s)://, file://)
    folder_data: str = "data"  # data folder, relative to the launch folder
    logging: bool = True  # log the run's progress (false: warnings only)
    logging_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR (or a number)
    logging_file: str = ""  # an extra log file ('' = only the run's igm.log)
    print_params: bool = True  # log the resolved parameters at start
    print_comp: bool = True  # log the per-plugin timing table at the end
    progress: str = "auto"  # auto, bar, log or off
    # Number the job returns (for sweepers): volume (final, km3), area
    # (final, km2), volume_change (km3), volume_change_misfit (|change - target|)
    objective: str = "volume"
    objective_target: float = 0.0  # target of volume_change_misfit (km3)
    hardware: HardwareParams = field(default_factory=HardwareParams)

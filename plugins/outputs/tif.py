"""Output ``tif``: chosen fields as GeoTIFF rasters at every save time.

One single-band float32 GeoTIFF per field and save time,
``tif/<field>_<year>.tif`` in the run folder, north up (rows from north to
south, as GIS tools expect), in the input's map projection (a run whose
input has none writes rasters without one, with a warning at the start),
with the field's units and long name as raster tags. Each file is written
atomically, so a killed run leaves only whole rasters; a continued run
rewrites the rasters of the saves after its checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError
from igm_core.files import atomic_path

log = logging.getLogger("igm")

KEY = "outputs.tif"


@dataclass
class Params:
    vars_to_save: list[str] = field(default_factory=lambda: ["usurf", "thk"])  # 2-D fields
    folder: str = "tif"  # sub-folder of the run folder for the rasters

    def __post_init__(self) -> None:
        if not self.vars_to_save:
            raise ConfigError(f"{KEY}.vars_to_save is empty: name at least one field")


def raster_path(folder: Path, name: str, t: float) -> Path:
    """The GeoTIFF of field ``name`` at save time ``t`` (yr)."""
    return folder / f"{name}_{t:g}.tif"


def write_raster(path: Path, values: np.ndarray, state, name: str) -> None:
    """Write the (ny, nx) field ``values`` as a north-up GeoTIFF, atomically."""
    import xarray as xr

    meta = state.meta(name)
    raster = xr.DataArray(np.asarray(values, dtype="float32")[::-1], dims=("y", "x"),
                          coords={"y": state.y[::-1], "x": state.x},
                          attrs={"units": meta.units, "long_name": meta.long_name})
    if state.grid.crs is not None:
        raster = raster.rio.write_crs(state.grid.crs)
    with atomic_path(path) as tmp:
        raster.rio.to_raster(tmp, driver="GTiff", compress="DEFLATE")


@hookimpl
def igm_output_initialize(params: Params, state, run) -> None:
    shape = state.grid.shape
    missing = [n for n in params.vars_to_save
               if not state.has(n) or np.shape(state.get(n)) != shape]
    if missing:
        available = sorted(n for n, v in state.fields.items() if np.shape(v) == shape)
        raise ConfigError(f"{KEY}.vars_to_save: no 2-D field '{missing[0]}' in this run; "
                          f"available: {', '.join(available)}")
    if state.grid.crs is None:
        log.warning("%s: the input gives no map projection: the GeoTIFFs have none", KEY)
    import rioxarray  # noqa: F401  (the .rio accessor; fails here, not at the first save)


@hookimpl
def igm_output_update(params: Params, state, run) -> None:
    if not state.saveresult:
        return
    folder = Path(run.output_dir) / params.folder
    for name in params.vars_to_save:
        write_raster(raster_path(folder, name, float(state.t)), state.get(name), state, name)

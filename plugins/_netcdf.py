"""Small netCDF helpers shared by the built-in input and output plugins.

Reading goes through :func:`open_dataset` (one clear error line for a file
that is not netCDF); writing defines CF-style coordinates and variables
from the State's field registry (:class:`igm_core.Field`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

import igm_core
from igm_core.context import RunContext
from igm_core.errors import DataError
from igm_core.state import Field


def open_dataset(path: str | Path, mode: str = "r") -> netCDF4.Dataset:
    """Open ``path`` with netCDF4 (masked arrays off); raise DataError
    naming the file when it cannot be opened."""
    try:
        ds = netCDF4.Dataset(str(path), mode)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot be opened as netCDF ({exc})") from exc
    ds.set_auto_mask(False)
    return ds


def read_array(ds: netCDF4.Dataset, name: str) -> np.ndarray:
    """Variable ``name`` as float64 with fill values (``_FillValue``,
    ``missing_value``) turned into NaN."""
    var = ds.variables[name]
    values = np.array(var[...], dtype="float64")
    for attr in ("_FillValue", "missing_value"):
        if attr in var.ncattrs():
            fill = np.asarray(var.getncattr(attr), dtype="float64")
            values[np.isin(values, fill)] = np.nan
    return values


def add_coordinate(ds: netCDF4.Dataset, name: str, values: Any, units: str,
                   long_name: str, axis: str | None = None) -> None:
    """Create dimension ``name`` (fixed size) and its coordinate variable
    (float64)."""
    values = np.asarray(values, dtype="float64")
    ds.createDimension(name, values.size)
    var = ds.createVariable(name, "f8", (name,))
    var[:] = values
    var.units = units
    var.long_name = long_name
    if axis:
        var.axis = axis


def define_variable(ds: netCDF4.Dataset, name: str, dims: tuple[str, ...], meta: Field,
                    dtype: str = "f4") -> netCDF4.Variable:
    """Create variable ``name`` on ``dims`` with units, long_name and
    standard_name from ``meta`` (zlib-compressed)."""
    var = ds.createVariable(name, dtype, dims, zlib=True, complevel=2)
    var.units = meta.units
    var.long_name = meta.long_name
    if meta.standard_name:
        var.standard_name = meta.standard_name
    return var


def global_attributes(run: RunContext, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """CF global attributes with provenance: the selected plugins with
    their distributions and versions, and the run's overrides."""
    plugins = "; ".join(f"{p.stage}.{p.name} ({p.distribution} {p.version})"
                        for p in run.plugins)
    attrs = {
        "Conventions": "CF-1.8",
        "source": f"igm-core {igm_core.__version__}",
        "plugins": plugins or "none",
        "overrides": " ".join(run.overrides) or "none",
        "history": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} created by igm_run",
    }
    attrs.update({k: str(v) for k, v in (extra or {}).items()})
    return attrs


def copy_first_records(source: str | Path, dest: str | Path, count: int,
                       record_dim: str = "time") -> None:
    """Copy the netCDF file ``source`` to ``dest`` keeping only the first
    ``count`` records along the unlimited dimension ``record_dim``: same
    dimensions, variables (type, compression, attributes) and global
    attributes; every other variable whole."""
    with open_dataset(source) as src, open_dataset(dest, "w") as dst:
        dst.setncatts({a: src.getncattr(a) for a in src.ncattrs()})
        for name, dim in src.dimensions.items():
            dst.createDimension(name, None if dim.isunlimited() else len(dim))
        for name, var in src.variables.items():
            filters = var.filters() or {}
            out = dst.createVariable(name, var.dtype, var.dimensions,
                                     zlib=bool(filters.get("zlib")),
                                     complevel=filters.get("complevel") or 4)
            out.setncatts({a: var.getncattr(a) for a in var.ncattrs() if a != "_FillValue"})
            if var.dimensions[:1] == (record_dim,):
                out[:count] = var[:count]
            else:
                out[...] = var[...]

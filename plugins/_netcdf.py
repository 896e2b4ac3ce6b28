"""Small netCDF helpers shared by the built-in input and output plugins.

Reading goes through :func:`open_dataset` (one clear error line for a file
that is not netCDF) and :func:`read_crs` (the map projection, with pyproj);
writing defines CF-1.8 coordinates (projection x/y, a time that xarray
decodes), the grid mapping, and variables from the State's field registry
(:class:`igm_core.Field`).

Time is written as CF requires, in days of a 365-day calendar since year 0
(``days since 0000-01-01``, ``calendar = "365_day"``): the value divided by
365 is the model's time in years, and xarray decodes it to dates whose
``.dt.year`` is the calendar year.
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
from igm_core.state import Field, Grid

DAYS_PER_YEAR = 365.0  # the 365_day calendar of the time coordinate
TIME = Field("time", "days since 0000-01-01", "time", "time", dims=("time",))
CALENDAR = "365_day"
CREDITS = ("title", "source", "institution", "references", "license", "comment")
"""Global attributes of an input that outputs carry (as ``input_<name>``)."""
GRID_MAPPING = "crs"


def open_dataset(path: str | Path, mode: str = "r", format: str = "NETCDF4") -> netCDF4.Dataset:
    """Open ``path`` with netCDF4 (masked arrays off; ``format`` for a new
    file); raise DataError naming the file when it cannot be opened."""
    try:
        ds = netCDF4.Dataset(str(path), mode, format=format)
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


def read_crs(ds: netCDF4.Dataset, path: str | Path) -> str | None:
    """The map projection of an input file as WKT, or None when it gives
    none: a CF grid mapping variable (named by a variable's
    ``grid_mapping``, or carrying ``grid_mapping_name``, ``crs_wkt`` or
    GDAL's ``spatial_ref``), else a global ``crs`` or ``spatial_ref``
    attribute (``EPSG:32632``, WKT or PROJ). DataError naming the file when
    it cannot be read."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    names = [str(v.getncattr("grid_mapping")) for v in ds.variables.values()
             if "grid_mapping" in v.ncattrs()]
    names += [n for n, v in ds.variables.items()
              if {"grid_mapping_name", "crs_wkt", "spatial_ref"} & set(v.ncattrs())]
    try:
        for name in dict.fromkeys(names):
            if name in ds.variables:
                attrs = {a: ds.variables[name].getncattr(a) for a in ds.variables[name].ncattrs()}
                if "crs_wkt" not in attrs and "spatial_ref" in attrs:
                    return CRS.from_wkt(str(attrs["spatial_ref"])).to_wkt()
                return CRS.from_cf(attrs).to_wkt()
        for attr in ("crs", "spatial_ref"):
            if attr in ds.ncattrs():
                return CRS.from_user_input(str(ds.getncattr(attr))).to_wkt()
    except CRSError as exc:
        raise DataError(f"{path}: cannot read the map projection: {exc}") from exc
    return None


def crs_name(wkt: str) -> str:
    """A short name of a CRS given as WKT (``EPSG:32632`` when it has one)."""
    from pyproj import CRS

    crs = CRS.from_wkt(wkt)
    code = crs.to_authority()
    return f"{code[0]}:{code[1]} ({crs.name})" if code else crs.name


def is_geographic(wkt: str) -> bool:
    """Whether a CRS (WKT) has longitude and latitude axes (degrees)."""
    from pyproj import CRS

    return bool(CRS.from_wkt(wkt).is_geographic)


def add_grid(ds: netCDF4.Dataset, grid: Grid) -> str | None:
    """Define the dimensions and coordinates ``y``, ``x`` (projection
    coordinates, m) of ``grid`` and, when it has a CRS, the CF grid mapping
    variable (with GDAL's ``spatial_ref``, which rioxarray and QGIS read);
    returns the grid mapping's name or None."""
    for name, values in (("y", grid.y), ("x", grid.x)):
        add_coordinate(ds, name, values, "m", f"{name} coordinate of projection (cell centre)",
                       axis=name.upper())
        ds[name].standard_name = f"projection_{name}_coordinate"
    if grid.crs is None:
        return None
    from pyproj import CRS

    var = ds.createVariable(GRID_MAPPING, "i4")
    var.setncatts({**CRS.from_wkt(grid.crs).to_cf(), "spatial_ref": grid.crs})
    return GRID_MAPPING


def add_time(ds: netCDF4.Dataset, size: int | None = None) -> netCDF4.Variable:
    """Define the time dimension (unlimited unless ``size``) and its CF
    coordinate; write values with :func:`days`."""
    ds.createDimension("time", size)
    var = define_variable(ds, "time", ("time",), TIME, dtype="f8")
    var.calendar = CALENDAR
    var.axis = "T"
    return var


def add_time_bounds(ds: netCDF4.Dataset) -> netCDF4.Variable:
    """Define ``time_bnds`` (time, nv), the start and end (days) of the
    interval each record stands for, named by the time coordinate's
    ``bounds``; needs :func:`add_time` first."""
    ds.createDimension("nv", 2)
    ds["time"].bounds = "time_bnds"
    return ds.createVariable("time_bnds", "f8", ("time", "nv"))


def days(years: Any) -> np.ndarray:
    """Model time (yr) as values of the time coordinate (days)."""
    return np.asarray(years, dtype="float64") * DAYS_PER_YEAR


def years(ds: netCDF4.Dataset) -> np.ndarray:
    """The time coordinate of a file written here, in years."""
    return np.asarray(ds["time"][:], dtype="float64") / DAYS_PER_YEAR


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
                    dtype: str = "f4", grid_mapping: str | None = None) -> netCDF4.Variable:
    """Create variable ``name`` on ``dims`` with units, long_name and
    standard_name from ``meta`` (zlib-compressed), and ``grid_mapping``
    when given for a field on (y, x)."""
    var = ds.createVariable(name, dtype, dims, zlib=True, complevel=2)
    var.units = meta.units
    var.long_name = meta.long_name
    if meta.standard_name:
        var.standard_name = meta.standard_name
    if grid_mapping and dims[-2:] == ("y", "x"):
        var.grid_mapping = grid_mapping
    return var


def global_attributes(run: RunContext, credits: Mapping[str, str] | None = None
                      ) -> dict[str, str]:
    """CF global attributes with provenance: a title, the selected plugins
    with their distributions and versions, the run's overrides, and the
    input's credits (``credits``: its title, source, references, ... carried
    as ``input_title``, ``input_source``, ...)."""
    plugins = "; ".join(f"{p.stage}.{p.name} ({p.distribution} {p.version})"
                        for p in run.plugins)
    credits = dict(credits or {})
    subject = f" of {credits['title']}" if credits.get("title") else ""
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"igm-core glacier simulation{subject}",
        "institution": credits.get("institution", "unknown"),
        "source": f"igm-core {igm_core.__version__}",
        "references": credits.get("references", "https://pypi.org/project/igm-core/"),
        "comment": "simulated with the plugins listed in 'plugins'; the input's credits are in "
                   "the input_* attributes",
        "plugins": plugins or "none",
        "overrides": " ".join(run.overrides) or "none",
        "history": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} created by igm_run",
    }
    attrs.update({f"input_{k}": str(v) for k, v in credits.items()})
    return attrs


def copy_first_records(source: str | Path, dest: str | Path, count: int,
                       record_dim: str = "time") -> None:
    """Copy the netCDF file ``source`` to ``dest`` keeping only the first
    ``count`` records along the unlimited dimension ``record_dim``: same
    dimensions, variables (type, compression, attributes) and global
    attributes; every other variable whole."""
    with open_dataset(source) as src, open_dataset(dest, "w", format=src.data_model) as dst:
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

"""Input ``local``: the initial State from a netCDF file or GeoTIFF rasters.

Reads coordinates ``x``, ``y`` (m) and every 2-D field on ``(y, x)``:
``topg``, ``thk``, ``usurf`` (m), optional ``icemask``, ``arrhenius``,
``slidingco`` and any other (kept in the State under its own name, with
the file's units). A field may carry extra leading dimensions of length
1 (a single ``time``); more than one time is an error. Missing geometry is
derived (``thk = 0``, ``usurf = topg + thk``, ``topg = usurf - thk``); a
descending axis is flipped. The file's own grid is checked (uniform, square
cells), and NaNs or negative thickness are errors naming the file and the
variable (``negative_thk: clamp`` sets negative thickness to 0 with a
warning instead). A GeoTIFF ``filename`` is read as ``usurf`` (a DEM), and
``rasters`` adds one single-band GeoTIFF per field on the same grid. Optional
steps, in this order: crop (``crop.xmin/xmax/ymin/ymax``,
m), coarsening by block averaging (``coarsening.ratio``, ``boundary`` trim
or extend), restriction of ice to the mask (``icemask.include``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from igm_core import Choice, hookimpl
from igm_core.errors import ConfigError, DataError
from igm_core.state import KNOWN_FIELDS, Field, check_grid
from igm_plugins._netcdf import (
    CREDITS,
    crs_name,
    is_geographic,
    open_dataset,
    read_array,
    read_crs,
)

log = logging.getLogger("igm")

KEY = "inputs.local"
GEOMETRY = ("topg", "thk", "usurf")


class Boundary(Choice):
    trim = "trim"  # drop the incomplete last block
    extend = "extend"  # pad the last block by the edge values


@dataclass
class Coarsening:
    ratio: int = 1  # cells of the file per cell of the model grid, along each axis
    boundary: Boundary = Boundary.trim  # trim or extend

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ConfigError(f"{KEY}.coarsening.ratio must be a positive integer, got "
                              f"{self.ratio}")


@dataclass
class Crop:
    xmin: float | None = None  # m; null = the file's own bound
    xmax: float | None = None  # m
    ymin: float | None = None  # m
    ymax: float | None = None  # m

    def __post_init__(self) -> None:
        for axis in ("x", "y"):
            lo, hi = getattr(self, f"{axis}min"), getattr(self, f"{axis}max")
            if lo is not None and hi is not None and not lo < hi:
                raise ConfigError(f"{KEY}.crop.{axis}min ({lo:g} m) must be below "
                                  f"{KEY}.crop.{axis}max ({hi:g} m)")


@dataclass
class IceMask:
    include: bool = False  # set thk = 0 outside icemask > 0.5 (needs variable icemask)


class NegativeThickness(Choice):
    error = "error"  # negative thickness stops the run, naming the file and the cells
    clamp = "clamp"  # set to 0, with a warning giving the number of cells and the minimum


@dataclass
class Params:
    # netCDF, or a GeoTIFF DEM (read as usurf); looked up in the run folder,
    # core.folder_data, the launch folder, or pkg://
    filename: str = "input.nc"
    # GeoTIFFs read as fields on the same grid, e.g. {thk: thk.tif, topg: bed.tif}
    rasters: dict[str, str] = field(default_factory=dict)
    negative_thk: NegativeThickness = NegativeThickness.error  # error or clamp
    coarsening: Coarsening = field(default_factory=Coarsening)
    crop: Crop = field(default_factory=Crop)
    icemask: IceMask = field(default_factory=IceMask)


provides = GEOMETRY


@dataclass
class Grid2D:
    """Coordinates (m, ascending) and 2-D fields (float64, (ny, nx)), the
    map projection (WKT or None) and the file's credits (global attributes)."""

    x: np.ndarray
    y: np.ndarray
    fields: dict[str, np.ndarray]
    meta: dict[str, Field]
    crs: str | None = None
    credits: dict[str, str] = field(default_factory=dict)


GEOTIFF = (".tif", ".tiff")


def read_file(path: Path, negative_thk: NegativeThickness = NegativeThickness.error,
              rasters: dict[str, Path] | None = None) -> Grid2D:
    """Read the netCDF file ``path`` (coordinates and every 2-D field), or
    the GeoTIFF ``path`` (as ``usurf``, a DEM), plus one GeoTIFF per field
    of ``rasters`` (field name -> file, on the same grid); flip descending
    axes; check each file's grid; derive missing geometry; reject NaNs and
    (unless ``negative_thk`` is clamp) negative thickness."""
    raw = read_geotiff(path, "usurf") if path.suffix.lower() in GEOTIFF else read_netcdf(path)
    grid = oriented(raw, path)
    for name, raster in (rasters or {}).items():
        extra = oriented(read_geotiff(raster, name), raster)
        if extra.x.shape != grid.x.shape or extra.y.shape != grid.y.shape or not (
                np.allclose(extra.x, grid.x) and np.allclose(extra.y, grid.y)):
            raise DataError(f"{raster}: {KEY}.rasters.{name} is not on the grid of {path} "
                            f"({extra.x.size} x {extra.y.size} cells from x={extra.x[0]:g}, "
                            f"y={extra.y[0]:g} m against {grid.x.size} x {grid.y.size} from "
                            f"x={grid.x[0]:g}, y={grid.y[0]:g} m)")
        grid.fields[name] = extra.fields[name]
        grid.crs = grid.crs or extra.crs
    derive_geometry(grid.fields, path, negative_thk)
    return grid


def read_netcdf(path: Path) -> Grid2D:
    """Coordinates, every 2-D field, projection and credits of a netCDF file,
    as stored."""
    ds = open_dataset(path)
    with ds:
        for coord in ("x", "y"):
            if coord not in ds.variables:
                raise DataError(f"{path}: missing coordinate variable '{coord}'")
        x = read_array(ds, "x").ravel()
        y = read_array(ds, "y").ravel()
        crs = read_crs(ds, path)
        credits = {k: str(ds.getncattr(k)) for k in CREDITS if k in ds.ncattrs()}
        fields: dict[str, np.ndarray] = {}
        meta: dict[str, Field] = {}
        for name, var in ds.variables.items():
            if name in ("x", "y"):
                continue
            values = _field_values(ds, name, path)
            if values is None:
                continue
            fields[name] = values
            if name not in KNOWN_FIELDS:
                attrs = {a: str(var.getncattr(a)) for a in var.ncattrs()}
                meta[name] = Field(name, attrs.get("units", "1"), attrs.get("long_name", name),
                                   attrs.get("standard_name"))
    return Grid2D(x, y, fields, meta, crs, credits)


def read_geotiff(path: Path, name: str) -> Grid2D:
    """One single-band GeoTIFF as the field ``name`` (no-data as NaN), with
    its cell-centre coordinates and projection, as stored."""
    import rioxarray

    try:
        raster = rioxarray.open_rasterio(path, masked=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot be opened as GeoTIFF ({type(exc).__name__}: "
                        f"{exc})") from exc
    with raster:
        bands = raster.sizes.get("band", 1)
        if bands != 1:
            raise DataError(f"{path}: {bands} bands; give one single-band GeoTIFF per field")
        values = np.asarray(raster.squeeze("band", drop=True).values, dtype="float64")
        crs = raster.rio.crs.to_wkt() if raster.rio.crs is not None else None
        x = np.asarray(raster["x"].values, dtype="float64")
        y = np.asarray(raster["y"].values, dtype="float64")
    return Grid2D(x, y, {name: values}, {}, crs)


def oriented(grid: Grid2D, path: Path) -> Grid2D:
    """``grid`` with ascending axes (fields flipped with them), checked:
    finite, uniform coordinates with square cells, in metres (not a
    geographic CRS), and fields without NaN. DataError naming the file."""
    x, y, fields = grid.x, grid.y, grid.fields
    for name, coord in (("x", x), ("y", y)):
        if not np.all(np.isfinite(coord)):
            raise DataError(f"{path}: coordinate '{name}' has NaN or missing values")
        if coord.size < 2:
            raise DataError(f"{path}: coordinate '{name}' needs at least 2 values")
    if x[1] < x[0]:
        x = x[::-1]
        fields = {k: v[:, ::-1] for k, v in fields.items()}
    if y[1] < y[0]:
        y = y[::-1]
        fields = {k: v[::-1, :] for k, v in fields.items()}
    try:  # the file's own grid, before any crop or coarsening rebuilds it
        check_grid(x, y)
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from exc
    if grid.crs is not None and is_geographic(grid.crs):
        raise DataError(f"{path}: the grid is in longitude and latitude ({crs_name(grid.crs)}); "
                        "the model needs a projected grid in metres (e.g. gdalwarp -t_srs "
                        "EPSG:32632 -tr 100 100)")
    for name, values in fields.items():
        bad = np.count_nonzero(~np.isfinite(values))
        if bad:
            raise DataError(f"{path}: variable '{name}' has {bad} NaN or missing values")
    return dataclasses.replace(grid, x=x, y=y, fields=dict(fields))


def _field_values(ds, name: str, path: Path) -> np.ndarray | None:
    """Variable ``name`` as a (y, x) array; None for a variable that is not
    on the grid. Leading dimensions of length 1 are dropped; a known field
    with a longer extra dimension (several times) is an error."""
    dims = tuple(ds.variables[name].dimensions)
    if dims[-2:] not in (("y", "x"), ("x", "y")):
        log.debug("%s: variable '%s' on %s is not a field on (y, x): ignored", path, name, dims)
        return None
    extra = {d: len(ds.dimensions[d]) for d in dims[:-2]}
    if any(n != 1 for n in extra.values()):
        if name in KNOWN_FIELDS:
            raise DataError(f"{path}: variable '{name}' is on ({', '.join(dims)}) with "
                            + ", ".join(f"{n} {d}" for d, n in extra.items())
                            + "; give one 2-D (y, x) field, e.g. select one time with "
                            f"'ncks -d {next(iter(extra))},0'")
        log.info("%s: variable '%s' on (%s) has more than one %s: ignored", path, name,
                 ", ".join(dims), next(iter(extra)))
        return None
    values = read_array(ds, name).reshape([len(ds.dimensions[d]) for d in dims[-2:]])
    return values.T if dims[-2:] == ("x", "y") else values


def derive_geometry(fields: dict[str, np.ndarray], path: Path,
                    negative_thk: NegativeThickness = NegativeThickness.error) -> None:
    """Fill in ``thk`` (0), ``usurf`` (topg + thk) or ``topg`` (usurf -
    thk) in place; raise DataError when neither topg nor usurf exists, or
    when the thickness (given or derived) is negative and ``negative_thk``
    is error."""
    if "topg" not in fields and "usurf" not in fields:
        raise DataError(f"{path}: missing variable 'topg' (bedrock elevation, m); "
                        "give topg, or usurf and thk")
    given = "thk" in fields
    if not given:
        fields["thk"] = (fields["usurf"] - fields["topg"] if "usurf" in fields
                         and "topg" in fields else np.zeros_like(next(iter(fields.values()))))
    if "topg" not in fields:
        fields["topg"] = fields["usurf"] - fields["thk"]
    negative = np.count_nonzero(fields["thk"] < 0)
    if negative:
        what = "variable 'thk'" if given else "thk = usurf - topg"
        found = (f"{path}: {what} is negative in {negative} cells (min "
                 f"{fields['thk'].min():.4g} m)")
        if negative_thk is NegativeThickness.error:
            raise DataError(f"{found}; fix the file, or set {KEY}.negative_thk=clamp to "
                            "set it to 0")
        log.warning("%s: set to 0 (%s.negative_thk=clamp)", found, KEY)
    fields["thk"] = np.maximum(fields["thk"], 0.0)
    fields["usurf"] = fields["topg"] + fields["thk"]


def crop(grid: Grid2D, params: Crop, path: Path) -> Grid2D:
    """Keep the cells whose centres lie in the crop window (m); raise
    ConfigError for a bound outside the domain or an empty window."""
    half = 0.5 * (grid.x[1] - grid.x[0])
    slices = []
    for axis, coord in (("x", grid.x), ("y", grid.y)):
        lo_key, hi_key = f"{axis}min", f"{axis}max"
        lo = getattr(params, lo_key)
        hi = getattr(params, hi_key)
        lo_dom, hi_dom = coord[0] - half, coord[-1] + half
        for key, value in ((lo_key, lo), (hi_key, hi)):
            if value is not None and not lo_dom <= value <= hi_dom:
                raise ConfigError(f"{KEY}.crop.{key}={value:g} is outside the domain of {path} "
                                  f"({axis} from {lo_dom:g} to {hi_dom:g} m)")
        lo = lo_dom if lo is None else lo
        hi = hi_dom if hi is None else hi
        keep = np.flatnonzero((coord >= lo) & (coord <= hi))
        if keep.size < 2:
            raise ConfigError(f"{KEY}.crop: the window {axis} from {lo:g} to {hi:g} m keeps "
                              f"{keep.size} cell(s) of {path}; at least 2 are needed")
        slices.append(slice(keep[0], keep[-1] + 1))
    sx, sy = slices
    return dataclasses.replace(grid, x=grid.x[sx], y=grid.y[sy],
                               fields={k: v[sy, sx] for k, v in grid.fields.items()})


def _blocks(values: np.ndarray, ratio: int, extend: bool) -> np.ndarray:
    """Block average of a 2-D array over ``ratio`` x ``ratio`` cells."""
    ny, nx = values.shape
    if extend:
        pad = ((0, -ny % ratio), (0, -nx % ratio))
        values = np.pad(values, pad, mode="edge")
    else:
        values = values[: ny - ny % ratio, : nx - nx % ratio]
    ny, nx = values.shape
    return values.reshape(ny // ratio, ratio, nx // ratio, ratio).mean(axis=(1, 3))


def _coarse_coord(coord: np.ndarray, ratio: int, extend: bool) -> np.ndarray:
    n = coord.size // ratio + (1 if extend and coord.size % ratio else 0)
    d = coord[1] - coord[0]
    return coord[0] + d * (ratio - 1) / 2 + d * ratio * np.arange(n)


def coarsen(grid: Grid2D, params: Coarsening, path: Path) -> Grid2D:
    """Block-average every field by ``params.ratio``; the mask stays binary
    (icemask > 0.5 after averaging)."""
    ratio = params.ratio
    if ratio == 1:
        return grid
    extend = params.boundary is Boundary.extend
    x = _coarse_coord(grid.x, ratio, extend)
    y = _coarse_coord(grid.y, ratio, extend)
    if x.size < 2 or y.size < 2:
        raise ConfigError(f"{KEY}.coarsening.ratio={ratio} leaves fewer than 2 cells along an "
                          f"axis of {path} ({grid.x.size} x {grid.y.size} cells)")
    fields = {k: _blocks(v, ratio, extend) for k, v in grid.fields.items()}
    if "icemask" in fields:
        fields["icemask"] = (fields["icemask"] > 0.5).astype("float64")
    return dataclasses.replace(grid, x=x, y=y, fields=fields)


def load(params: Params, path: Path, rasters: dict[str, Path] | None = None) -> Grid2D:
    """Read (``path``, and the GeoTIFFs ``rasters``: field -> file), crop,
    coarsen and mask: the grid the model runs on."""
    grid = read_file(path, params.negative_thk, rasters)
    if any(v is not None for v in (params.crop.xmin, params.crop.xmax, params.crop.ymin,
                                   params.crop.ymax)):
        grid = crop(grid, params.crop, path)
    grid = coarsen(grid, params.coarsening, path)
    if params.icemask.include:
        if "icemask" not in grid.fields:
            raise DataError(f"{path}: missing variable 'icemask', needed by "
                            f"{KEY}.icemask.include=true")
        fields = grid.fields
        fields["thk"] = np.where(fields["icemask"] > 0.5, fields["thk"], 0.0)
        fields["usurf"] = fields["topg"] + fields["thk"]
    return grid


@hookimpl
def igm_input_initialize(params: Params, state, run) -> None:
    import tensorflow as tf

    path = run.find_file(params.filename)
    if path is None:
        raise DataError(f"{KEY}.filename: input file '{params.filename}' not found in "
                        f"{run.output_dir}, {run.data_dir} or {run.launch_dir}")
    rasters = {}
    for name, filename in params.rasters.items():
        found = run.find_file(filename)
        if found is None:
            raise DataError(f"{KEY}.rasters.{name}: GeoTIFF '{filename}' not found in "
                            f"{run.output_dir}, {run.data_dir} or {run.launch_dir}")
        rasters[name] = found
    grid = load(params, path, rasters)
    try:
        state.set_grid(grid.x, grid.y, grid.crs)
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from exc
    state.credits.update(grid.credits)
    for name, values in grid.fields.items():
        if name in grid.meta:
            state.declare(grid.meta[name], provider=f"input 'local' ({path.name})")
        setattr(state, name, tf.constant(values, dtype=tf.float32))
    log.info("input %s: %d x %d cells of %g m, fields %s; %s", path, grid.x.size, grid.y.size,
             state.dx, ", ".join(sorted(grid.fields)),
             f"projection {crs_name(grid.crs)}" if grid.crs else "no map projection given")

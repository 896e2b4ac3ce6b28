"""Output ``local``: netCDF files in the run folder, written at save times.

- ``output.nc``: dimensions ``(time, y, x)`` (and ``z``, the relative
  height ``zeta`` of the ice-flow levels, for 3-D fields), the fields of
  ``vars_to_save`` with CF units and long names from the field registry,
  global attributes with the selected plugins and their versions.
- ``output_ts.nc``: ice volume (km3) and area (km2) at each save time.
- ``particles/particles_<year>.nc``: one file per save time with every
  particle's variables, when a process hands particles over in
  ``state.particles`` (a dict of 1-D arrays; metadata declared as fields
  ``particles.<name>``).

Every file is replaced atomically: ``output.nc`` grows in a private working
file (``.output.nc.partial``, removed at the end of the run) copied over
``output.nc`` in one rename, so a run killed at any moment leaves the last
complete file readable.

Names in ``vars_to_save``: a field in the State is written; a name of the
default list that no selected plugin provides (``wvelsurf`` without
``vert_flow``) is skipped with one warning; any other missing name is an
error that lists the fields available.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError
from igm_core.files import atomic_path
from igm_core.state import Field
from igm_plugins._netcdf import add_coordinate, define_variable, global_attributes, open_dataset

log = logging.getLogger("igm")

KEY = "outputs.local"
DEFAULT_VARS = ("topg", "usurf", "thk", "smb", "velbar_mag", "velsurf_mag", "uvelsurf",
                "vvelsurf", "wvelsurf")
TIME = Field("time", "yr", "time (calendar year)", dims=("time",))
SERIES = (Field("vol", "km3", "ice volume", dims=("time",)),
          Field("area", "km2", "ice-covered area", dims=("time",)))


@dataclass
class Params:
    vars_to_save: list[str] = field(default_factory=lambda: list(DEFAULT_VARS))
    filename: str = "output.nc"  # gridded fields at every save time
    filename_ts: str = "output_ts.nc"  # ice volume and area at every save time
    folder_particles: str = "particles"  # one particles_<year>.nc per save time


@dataclass
class Writer:
    """What one run's output keeps between saves."""

    names: list[str]
    path: Path
    work: Path
    path_ts: Path
    folder_particles: Path
    attrs: dict[str, str]
    series: dict[str, list[float]] = field(
        default_factory=lambda: {"time": [], "vol": [], "area": []})


def gridded_fields(state) -> list[str]:
    """Names of the State's fields on the grid ((ny, nx) or (nz, ny, nx))."""
    shape = state.grid.shape
    return sorted(n for n, v in state.fields.items()
                  if np.ndim(v) in (2, 3) and tuple(np.shape(v)[-2:]) == shape)


def select_names(wanted: list[str], state) -> list[str]:
    """The names of ``wanted`` to write, in order: present ones kept,
    missing default ones skipped with one warning, others an error."""
    available = gridded_fields(state)
    keep, skipped = [], []
    for name in wanted:
        if name in available:
            keep.append(name)
        elif name in DEFAULT_VARS:
            skipped.append(name)
        elif state.has(name):
            raise ConfigError(f"{KEY}.vars_to_save: field '{name}' has shape "
                              f"{tuple(np.shape(state.get(name)))}, not on the cell centres "
                              f"{state.grid.shape}; only cell-centre fields are written")
        else:
            raise ConfigError(f"{KEY}.vars_to_save: no field '{name}' in this run; available: "
                              f"{', '.join(available)}")
    if skipped:
        log.warning("%s: not saving %s (no selected plugin provides them)", KEY,
                    ", ".join(skipped))
    return list(dict.fromkeys(keep))


def create_work_file(w: Writer, state) -> None:
    """The working file: coordinates, then empty time-dependent variables."""
    with open_dataset(w.work, "w") as ds:
        ds.setncatts(w.attrs)
        ds.createDimension("time", None)
        tvar = define_variable(ds, "time", ("time",), TIME, dtype="f8")
        tvar.axis = "T"
        add_coordinate(ds, "y", state.y, "m", "y coordinate (cell centre)", axis="Y")
        add_coordinate(ds, "x", state.x, "m", "x coordinate (cell centre)", axis="X")
        levels = [np.shape(state.get(n))[0] for n in w.names if np.ndim(state.get(n)) == 3]
        if levels:
            zeta = (np.asarray(state.get("zeta")) if state.has("zeta")
                    else np.linspace(0.0, 1.0, levels[0]))
            add_coordinate(ds, "z", zeta, "1", "relative height above the bed (0 bed, 1 surface)",
                           axis="Z")
        for name in w.names:
            dims = ("time", "z", "y", "x") if np.ndim(state.get(name)) == 3 else ("time", "y", "x")
            define_variable(ds, name, dims, state.meta(name))


def append_frame(w: Writer, state) -> None:
    """Add the current fields at ``state.t`` to the working file and copy it
    over ``output.nc`` atomically."""
    if not w.work.exists():
        create_work_file(w, state)
    with open_dataset(w.work, "a") as ds:
        k = ds.dimensions["time"].size
        ds["time"][k] = float(state.t)
        for name in w.names:
            value = state.get(name)
            ds[name][k] = np.nan if value is None else np.asarray(value, dtype="float32")
    with atomic_path(w.path) as tmp:
        shutil.copyfile(w.work, tmp)


def write_series(w: Writer, state) -> None:
    """Append volume and area at ``state.t`` and rewrite ``output_ts.nc``."""
    w.series["time"].append(float(state.t))
    w.series["vol"].append(state.ice_volume())
    w.series["area"].append(state.ice_area())
    with atomic_path(w.path_ts) as tmp, open_dataset(tmp, "w") as ds:
        ds.setncatts(w.attrs)
        ds.createDimension("time", len(w.series["time"]))
        define_variable(ds, "time", ("time",), TIME, dtype="f8")[:] = w.series["time"]
        for meta in SERIES:
            define_variable(ds, meta.name, ("time",), meta, dtype="f8")[:] = w.series[meta.name]


def write_particles(w: Writer, state) -> Path:
    """Write ``state.particles`` (dict of 1-D arrays) to one file for
    ``state.t``; returns its path."""
    particles: dict[str, Any] = state.particles
    path = w.folder_particles / f"particles_{float(state.t):g}.nc"
    n = len(np.asarray(next(iter(particles.values())))) if particles else 0
    with atomic_path(path) as tmp, open_dataset(tmp, "w") as ds:
        ds.setncatts({**w.attrs, "time": f"{float(state.t):g}"})
        ds.createDimension("particle", n)
        for name, values in particles.items():
            values = np.asarray(values)
            dtype = "i8" if np.issubdtype(values.dtype, np.integer) else "f8"
            define_variable(ds, name, ("particle",), state.meta(f"particles.{name}"),
                            dtype=dtype)[:] = values
    return path


@hookimpl
def igm_output_initialize(params: Params, state, run) -> None:
    out = Path(run.output_dir)
    w = Writer(names=select_names(list(params.vars_to_save), state), path=out / params.filename,
               work=out / f".{params.filename}.partial", path_ts=out / params.filename_ts,
               folder_particles=out / params.folder_particles, attrs=global_attributes(run))
    if w.work.exists():
        w.work.unlink()
    state.extras[KEY] = w


@hookimpl
def igm_output_update(params: Params, state) -> None:
    if not state.saveresult:
        return
    w: Writer = state.extras[KEY]
    append_frame(w, state)
    write_series(w, state)
    if state.has("particles"):
        write_particles(w, state)


@hookimpl
def igm_output_finalize(params: Params, state) -> None:
    w: Writer = state.extras[KEY]
    if w.work.exists():
        w.work.unlink()
    log.info("%s: wrote %s (%d save times) and %s", KEY, w.path, len(w.series["time"]),
             w.path_ts)

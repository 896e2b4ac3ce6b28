"""Output ``local``: netCDF files in the run folder, written at save times.

- ``output.nc``: dimensions ``(time, y, x)`` (and ``z``, the relative
  height ``zeta`` of the ice-flow levels, for 3-D fields), the fields of
  ``vars_to_save`` with CF units and long names from the field registry,
  global attributes with the selected plugins and their versions.
- ``output_ts.nc``: ice volume (km3) and area (km2) at each save time, and
  the State's scalar fields (``Field(dims=())``): a value at each save, or,
  for a total since the start (``Field(total=True)``, such as ``thk``'s
  mass budget in m3), its mean rate per year over the interval since the
  previous save (``cell_methods: time: mean``, with ``time_bnds``; the first
  save has no interval and holds the fill value).
- ``particles/particles_<year>.nc``: one file per save time with every
  particle's variables, when a process hands particles over in
  ``state.particles`` (a dict of 1-D arrays; metadata declared as fields
  ``particles.<name>``).

``output.nc`` is created atomically at the first save, then each save is
appended in place as one record of a netCDF-3 (64-bit offset) file, so
writing costs the size of the save: the record's data reach the file before
the header's record count is raised, so a run killed at any moment leaves
``output.nc`` readable with every completed save (netCDF-4/HDF5, whose
compression would make the file smaller, can be left unreadable by a kill
during an append). The small files (``output_ts.nc``, particles) are
replaced atomically.

A run continued from a checkpoint appends to these files: the output's
memory (:class:`Writer`) remembers the saves, and restoring it keeps the
first saves of the earlier run's files (in its own folder, or copied from
the folder the checkpoint comes from) up to the checkpoint, so no save time
is missing or repeated.

Names in ``vars_to_save``: a field in the State is written; a name of the
default list that no selected plugin provides (``wvelsurf`` without
``vert_flow``) is skipped with one warning; any other missing name is an
error that lists the fields available.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError
from igm_core.files import atomic_path
from igm_core.state import Field
from igm_plugins._netcdf import (
    add_coordinate,
    add_grid,
    add_time,
    add_time_bounds,
    copy_first_records,
    days,
    define_variable,
    global_attributes,
    open_dataset,
)

log = logging.getLogger("igm")

KEY = "outputs.local"
FORMAT = "NETCDF3_64BIT_OFFSET"  # appendable in place and readable after a kill
DEFAULT_VARS = ("topg", "usurf", "thk", "smb", "velbar_mag", "velsurf_mag", "uvelsurf",
                "vvelsurf", "wvelsurf")
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
    """What one run's output keeps between saves (its memory): the fields
    written, the files, and the series (volume, area, scalar fields; one
    entry per save); ``restart_dir`` is the run folder of the checkpoint the
    run continues from."""

    names: list[str]
    path: Path
    path_ts: Path
    folder_particles: Path
    attrs: dict[str, str]
    restart_dir: Path | None = None
    scalars: list[Field] = field(default_factory=list)  # the State's scalar fields
    series: dict[str, list[float]] = field(
        default_factory=lambda: {"time": [], "vol": [], "area": []})
    created: bool = False  # whether this run's output.nc exists (saves are appended to it)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the names written and the series (one
        entry per save)."""
        return {"names": list(self.names), "series": self.series}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue the files of the checkpoint's run up to its last save."""
        if list(saved["names"]) != self.names:
            raise ConfigError(f"{KEY}.vars_to_save: the checkpoint's output.nc holds "
                              f"{', '.join(saved['names'])}; a continued run appends to it, so "
                              f"the same fields are needed (configured: {', '.join(self.names)})")
        self.series = {k: list(v) for k, v in saved["series"].items()}
        saves = self.series["time"]
        source = (self.restart_dir or self.path.parent) / self.path.name
        if not source.is_file():
            log.warning("%s: %s not found: %s starts after the checkpoint (t=%g yr) without the "
                        "%d earlier saves", KEY, source, self.path.name, saves[-1], len(saves))
            write_series(self)
            return
        with atomic_path(self.path) as tmp:
            copy_first_records(source, tmp, len(saves))
        self.created = True
        write_series(self)
        keep_particle_files(self, saves[-1])


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


def create_file(w: Writer, state) -> None:
    """A new ``output.nc``, atomically: coordinates, grid mapping, then empty
    time-dependent variables (netCDF-3, 64-bit offset: appendable in place)."""
    with atomic_path(w.path) as tmp, open_dataset(tmp, "w", format=FORMAT) as ds:
        ds.setncatts(w.attrs)
        add_time(ds)
        mapping = add_grid(ds, state.grid)
        levels = [np.shape(state.get(n))[0] for n in w.names if np.ndim(state.get(n)) == 3]
        if levels:
            zeta = (np.asarray(state.get("zeta")) if state.has("zeta")
                    else np.linspace(0.0, 1.0, levels[0]))
            add_coordinate(ds, "z", zeta, "1", "relative height above the bed (0 bed, 1 surface)",
                           axis="Z")
            ds["z"].positive = "up"
        for name in w.names:
            dims = ("time", "z", "y", "x") if np.ndim(state.get(name)) == 3 else ("time", "y", "x")
            define_variable(ds, name, dims, state.meta(name), grid_mapping=mapping)
    w.created = True


def append_frame(w: Writer, state) -> None:
    """Append the current fields at ``state.t`` to ``output.nc`` as one
    record (without filling it first: each byte is written once)."""
    if not w.created:
        create_file(w, state)
    with open_dataset(w.path, "a") as ds:
        ds.set_fill_off()
        k = ds.dimensions["time"].size
        for name in w.names:
            value = state.get(name)
            ds[name][k] = np.nan if value is None else np.asarray(value, dtype="float32")
        ds["time"][k] = days(float(state.t))  # the record count reaches the file at close


def scalar_fields(state) -> list[Field]:
    """The State's float scalar fields (declared with ``dims=()``)."""
    return [meta for name, meta in state.declared().items()
            if meta.dims == () and name in state and np.ndim(state.get(name)) == 0]


def append_series(w: Writer, state) -> None:
    """Append volume, area and the scalar fields at ``state.t`` and rewrite
    ``output_ts.nc``."""
    w.series["time"].append(float(state.t))
    w.series["vol"].append(state.ice_volume())
    w.series["area"].append(state.ice_area())
    for meta in w.scalars:
        w.series.setdefault(meta.name, []).append(float(state.get(meta.name)))
    write_series(w)


def mean_rates(totals: list[float], t: list[float]) -> np.ma.MaskedArray:
    """Mean rates per year over the intervals between saves from totals
    since the start; the first save has no interval (masked)."""
    totals_a, t_a = np.asarray(totals, "float64"), np.asarray(t, "float64")
    rates = np.ma.masked_all(totals_a.shape, "float64")
    rates[1:] = np.diff(totals_a) / np.diff(t_a)
    return rates


def write_series(w: Writer) -> None:
    """Write ``output_ts.nc`` from the series."""
    t = w.series["time"]
    with atomic_path(w.path_ts) as tmp, open_dataset(tmp, "w") as ds:
        ds.setncatts(w.attrs)
        add_time(ds, len(t))[:] = days(t)
        if any(meta.total for meta in w.scalars):
            add_time_bounds(ds)[:] = days(np.stack([np.r_[t[:1], t[:-1]], t], axis=1))
        for meta in SERIES:
            define_variable(ds, meta.name, ("time",), meta, dtype="f8")[:] = w.series[meta.name]
        for meta in w.scalars:
            values = w.series.get(meta.name, [])
            if len(values) != len(t):
                continue  # a field the checkpoint's run did not have
            if meta.total:
                rate = replace(meta, units=f"{meta.units} yr-1",
                                           long_name=f"{meta.long_name}, mean rate since the "
                                           "previous save")
                var = define_variable(ds, meta.name, ("time",), rate, dtype="f8")
                var.cell_methods = "time: mean"
                var[:] = mean_rates(values, t)
            else:
                define_variable(ds, meta.name, ("time",), meta, dtype="f8")[:] = values


def particles_file(folder: Path, t: float) -> Path:
    """The particle file of save time ``t`` (yr)."""
    return folder / f"particles_{t:g}.nc"


def particle_files(folder: Path) -> dict[float, Path]:
    """The particle files in ``folder``, by save time (yr)."""
    found = {}
    for path in folder.glob("particles_*.nc"):
        try:
            found[float(path.stem.split("_", 1)[1])] = path
        except ValueError:
            continue
    return found


def keep_particle_files(w: Writer, t_last: float) -> None:
    """The particle files of a continued run: those of the saves up to
    ``t_last`` (yr), copied from the checkpoint's run folder when it is
    another; later ones (written after the checkpoint) removed."""
    here = w.folder_particles
    for t, path in particle_files(here).items():
        if t > t_last:
            path.unlink()
    if w.restart_dir is None or w.restart_dir == here.parent:
        return
    there = w.restart_dir / here.name
    for t, path in particle_files(there).items():
        if t <= t_last:
            with atomic_path(particles_file(here, t)) as tmp:
                shutil.copyfile(path, tmp)


def write_particles(w: Writer, state) -> Path:
    """Write ``state.particles`` (dict of 1-D arrays) to one file for
    ``state.t``; returns its path."""
    particles: dict[str, Any] = state.particles
    path = particles_file(w.folder_particles, float(state.t))
    n = len(np.asarray(next(iter(particles.values())))) if particles else 0
    with atomic_path(path) as tmp, open_dataset(tmp, "w") as ds:
        ds.setncatts({**w.attrs, "time": f"{float(state.t):g}"})
        ds.createDimension("particle", n)
        for name, values in particles.items():
            values = np.asarray(values)
            # CF-1.8 has no 64-bit integers; particle numbers stay far below 2**31
            dtype = "i4" if np.issubdtype(values.dtype, np.integer) else "f8"
            define_variable(ds, name, ("particle",), state.meta(f"particles.{name}"),
                            dtype=dtype)[:] = values
    return path


@hookimpl
def igm_output_initialize(params: Params, state, run) -> Writer:
    out = Path(run.output_dir)
    w = Writer(names=select_names(list(params.vars_to_save), state), path=out / params.filename,
               path_ts=out / params.filename_ts,
               folder_particles=out / params.folder_particles,
               attrs=global_attributes(run, state.credits),
               restart_dir=run.restart_dir, scalars=scalar_fields(state))
    if run.restart is None:  # files of an earlier attempt of this run are replaced
        for path in particle_files(w.folder_particles).values():
            path.unlink()
    return w


@hookimpl
def igm_output_update(state, memory: Writer) -> None:
    if not state.saveresult:
        return
    append_frame(memory, state)
    append_series(memory, state)
    if state.has("particles"):
        write_particles(memory, state)


@hookimpl
def igm_output_finalize(memory: Writer) -> None:
    log.info("%s: wrote %s (%d save times) and %s", KEY, memory.path,
             len(memory.series["time"]), memory.path_ts)

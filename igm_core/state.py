"""The State: grid, gridded fields with their metadata, and the clock.

Fields are stored as attributes (``state.thk``), TensorFlow tensors or
variables in float32 by default. Every field has a :class:`Field` record
(units, long name) so outputs write CF metadata without each plugin
repeating it. This module does not import TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from igm_core.errors import ConfigError, FieldError


@dataclass(frozen=True)
class Field:
    """Metadata of a State field.

    ``units`` follow UDUNITS/CF spelling (``m``, ``m yr-1``, ``MPa``;
    ``a`` is the are, 100 m2, to UDUNITS, never the year); ``standard_name``
    is a name of the CF standard name table or None;
    ``dims`` is ``("y", "x")`` for 2-D fields, ``("z", "y", "x")`` for
    fields on the ice-flow levels, or names ``x_face``/``y_face`` for a
    field staggered onto the cell faces (one more value than cells along
    that axis; outputs write only fields on the cell centres), or ``()``
    for a scalar.

    ``rate_of`` names the field this one is a rate of (``units`` per year):
    the plugin that writes that field applies the rate, so a process that
    changes another's field hands it a rate instead of writing it (``smb``
    and every thickness source are rates of ``thk``, which ``thk``
    applies and budgets).

    ``total``: a scalar summed since the start of the run (a volume in m3,
    say); ``output_ts.nc`` writes its mean rate per year between saves.
    """

    name: str
    units: str
    long_name: str
    standard_name: str | None = None
    dims: tuple[str, ...] = ("y", "x")
    rate_of: str | None = None
    total: bool = False


def _f(name: str, units: str, long_name: str, standard_name: str | None = None,
       dims: tuple[str, ...] = ("y", "x"), rate_of: str | None = None) -> Field:
    return Field(name, units, long_name, standard_name, dims, rate_of)


_3D = ("z", "y", "x")

KNOWN_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        _f("topg", "m", "bedrock elevation", "bedrock_altitude"),
        _f("thk", "m", "ice thickness", "land_ice_thickness"),
        _f("usurf", "m", "ice surface elevation", "surface_altitude"),
        _f("icemask", "1", "mask of the glacier outline (1 = ice allowed)"),
        _f("noslip", "1", "mask of the beds that do not slide (1 = no slip)"),
        _f("smb", "m yr-1", "surface mass balance (ice equivalent)",
           "land_ice_surface_specific_mass_balance_rate", rate_of="thk"),
        _f("arrhenius", "MPa-3 yr-1", "Glen's flow rate factor A"),
        # C in tau_b = C (|u_b| / u_0)^(1/m) |u_b|^-1 u_b with u_0 = 1 m yr-1 (m = 3): a
        # stress; the same number as C in MPa yr^(1/m) m^(-1/m), which UDUNITS cannot spell
        _f("slidingco", "MPa", "Weertman sliding coefficient C: basal shear stress at a "
           "sliding speed of 1 m yr-1"),
        _f("ubar", "m yr-1", "depth-averaged ice velocity, x component",
           "land_ice_vertical_mean_x_velocity"),
        _f("vbar", "m yr-1", "depth-averaged ice velocity, y component",
           "land_ice_vertical_mean_y_velocity"),
        _f("uvelsurf", "m yr-1", "surface ice velocity, x component",
           "land_ice_surface_x_velocity"),
        _f("vvelsurf", "m yr-1", "surface ice velocity, y component",
           "land_ice_surface_y_velocity"),
        _f("wvelsurf", "m yr-1", "surface ice velocity, vertical component",
           "land_ice_surface_upward_velocity"),
        _f("uvelbase", "m yr-1", "basal ice velocity, x component", "land_ice_basal_x_velocity"),
        _f("vvelbase", "m yr-1", "basal ice velocity, y component", "land_ice_basal_y_velocity"),
        _f("ubar_xface", "m yr-1", "depth-averaged ice velocity, x component, on the x-faces "
           "of the cells (ny, nx+1)", dims=("y", "x_face")),
        _f("vbar_yface", "m yr-1", "depth-averaged ice velocity, y component, on the y-faces "
           "of the cells (ny+1, nx)", dims=("y_face", "x")),
        _f("velbar_mag", "m yr-1", "magnitude of the depth-averaged ice velocity"),
        _f("velsurf_mag", "m yr-1", "magnitude of the surface ice velocity"),
        _f("U", "m yr-1", "ice velocity, x component, on the vertical levels",
           "land_ice_x_velocity", dims=_3D),
        _f("V", "m yr-1", "ice velocity, y component, on the vertical levels",
           "land_ice_y_velocity", dims=_3D),
        _f("W", "m yr-1", "ice velocity, vertical component, on the vertical levels",
           dims=_3D),
        _f("divflux", "m yr-1", "divergence of the ice flux"),
    )
}
"""Metadata of the fields that several plugins share."""

_CLOCK = ("t", "dt", "it", "t_end", "saveresult")
_RESERVED = {"grid", "credits", "fields", *_CLOCK}


@dataclass(frozen=True)
class Grid:
    """A regular grid: cell centres ``x`` (nx,) and ``y`` (ny,) in metres,
    ascending, square cells of side ``dx`` metres; ``crs``: its map
    projection as WKT (None when the input gives none)."""

    x: np.ndarray
    y: np.ndarray
    crs: str | None = None

    @property
    def dx(self) -> float:
        """Cell size (m)."""
        return float(self.x[1] - self.x[0]) if self.x.size > 1 else 1.0

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return (int(self.y.size), int(self.x.size))


def check_grid(x: Iterable[float], y: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates ``x``, ``y`` (m) as float64 arrays, checked:
    1-D, at least 2 values, strictly ascending, uniform, square cells.
    Raises ConfigError naming the coordinate otherwise."""
    xa = np.asarray(x, dtype="float64")
    ya = np.asarray(y, dtype="float64")
    for name, c in (("x", xa), ("y", ya)):
        if c.ndim != 1 or c.size < 2:
            raise ConfigError(f"grid coordinate '{name}' must be 1-D with at least 2 values")
        d = np.diff(c)
        if np.any(d <= 0):
            raise ConfigError(f"grid coordinate '{name}' must be strictly ascending")
        if not np.allclose(d, d[0], rtol=1e-6, atol=1e-6 * abs(d[0])):
            raise ConfigError(f"grid coordinate '{name}' is not uniform (spacing from "
                              f"{d.min():g} to {d.max():g} m)")
    if not math.isclose(xa[1] - xa[0], ya[1] - ya[0], rel_tol=1e-6):
        raise ConfigError(f"grid cells must be square: dx={xa[1] - xa[0]:g} m, "
                          f"dy={ya[1] - ya[0]:g} m")
    return xa, ya


class State:
    """Grid, fields and clock of one run.

    Clock attributes: ``t`` (yr), ``dt`` (yr), ``it`` (completed steps),
    ``t_end`` (yr, set by the time process), ``saveresult`` (true when
    outputs should write). Any other attribute set on the State is a field;
    its metadata is looked up in :data:`KNOWN_FIELDS` or must be declared
    with :meth:`declare` first.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "grid", None)
        # global attributes of the input that outputs carry (its title,
        # source, institution, references, license), set by the input plugin
        object.__setattr__(self, "credits", {})
        object.__setattr__(self, "fields", {})
        object.__setattr__(self, "_meta", {})
        object.__setattr__(self, "_providers", {})
        self.t = math.nan
        self.dt = 0.0
        self.it = 0
        self.t_end: float | None = None
        self.saveresult = False

    # -- grid -------------------------------------------------------------
    def set_grid(self, x: Iterable[float], y: Iterable[float], crs: str | None = None) -> Grid:
        """Set the grid from cell-centre coordinates (m), ascending and
        uniform with square cells, in the map projection ``crs`` (WKT, or
        None). Raises ConfigError otherwise."""
        xa, ya = check_grid(x, y)
        grid = Grid(xa, ya, crs)
        object.__setattr__(self, "grid", grid)
        return grid

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x coordinates (m), shape (nx,)."""
        return self._require_grid().x

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y coordinates (m), shape (ny,)."""
        return self._require_grid().y

    @property
    def dx(self) -> float:
        """Cell size (m)."""
        return self._require_grid().dx

    def _require_grid(self) -> Grid:
        if self.grid is None:
            raise FieldError("the State has no grid yet: an input plugin must call "
                             "state.set_grid(x, y) first")
        return self.grid

    # -- fields -----------------------------------------------------------
    def declare(self, field: Field | str, provider: str | None = None) -> Field:
        """Register a field's metadata (a :class:`Field`, or the name of a
        field in :data:`KNOWN_FIELDS`); returns the record."""
        if isinstance(field, str):
            if field not in KNOWN_FIELDS:
                raise FieldError(f"field '{field}' has no metadata: declare it with "
                                 "igm_core.Field(name, units, long_name)")
            field = KNOWN_FIELDS[field]
        if field.name in _RESERVED:
            raise FieldError(f"'{field.name}' is a reserved State attribute, not a field")
        self._meta[field.name] = field
        if provider:
            self._providers.setdefault(field.name, provider)
        return field

    def declare_all(self, fields: Iterable[Field | str], provider: str | None = None) -> None:
        """Declare several fields (see :meth:`declare`)."""
        for f in fields:
            self.declare(f, provider)

    def declared(self) -> dict[str, Field]:
        """The metadata declared so far (name -> Field), in declaration order."""
        return dict(self._meta)

    def meta(self, name: str) -> Field:
        """Metadata of field ``name``."""
        if name in self._meta:
            return self._meta[name]
        if name in KNOWN_FIELDS:
            return KNOWN_FIELDS[name]
        return Field(name, "1", name)

    def has(self, name: str) -> bool:
        """Whether field ``name`` holds a value."""
        return name in self.fields

    def get(self, name: str, default: Any = None) -> Any:
        """Field ``name``, or ``default`` when absent."""
        return self.fields.get(name, default)

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "fields")
        if name in fields:
            return fields[name]
        if name.startswith("__"):
            raise AttributeError(name)
        providers = object.__getattribute__(self, "_providers")
        hint = (f"; it is provided by '{providers[name]}', which must come earlier"
                if name in providers else "; no selected plugin provides it")
        raise FieldError(f"State field '{name}' is not set{hint}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CLOCK or name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in _RESERVED:
            raise FieldError(f"'{name}' is a reserved State attribute")
        else:
            self.fields[name] = value

    def __delattr__(self, name: str) -> None:
        self.fields.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __repr__(self) -> str:
        shape = self.grid.shape if self.grid is not None else None
        return f"State(t={self.t}, it={self.it}, grid={shape}, fields={sorted(self.fields)})"

    # -- derived figures ----------------------------------------------------
    def ice_volume(self) -> float:
        """Ice volume (km3) from ``thk``, or NaN without thickness."""
        if "thk" not in self.fields or self.grid is None:
            return math.nan
        return float(np.sum(np.asarray(self.fields["thk"], dtype="float64"))) * self.dx**2 / 1e9

    def ice_area(self, threshold: float = 0.0) -> float:
        """Ice-covered area (km2): cells with ``thk > threshold`` m."""
        if "thk" not in self.fields or self.grid is None:
            return math.nan
        cells = np.count_nonzero(np.asarray(self.fields["thk"]) > threshold)
        return float(cells) * self.dx**2 / 1e6

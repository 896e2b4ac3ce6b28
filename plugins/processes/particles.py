"""Process ``particles``: Lagrangian tracers carried by the 3-D ice flow.

Seeding: at the first update (the start) and then every ``frequency_seeding`` years, in each
cell of the accumulation area (``smb > 0``) with ice (``thk > thk_min``),
``density_seeding`` particles per cell on average (the whole part always,
the fraction by chance), at random positions in the cell, at the surface.

Advection (forward Euler over ``state.dt``): horizontal velocities from
``U``, ``V`` and the vertical one from ``W`` (m/yr), interpolated
bilinearly in the horizontal and linearly between the ice-flow levels at
the particle's relative height ``rh`` (0 at the bed, 1 at the surface).
With ``z = b + rh H``, ``dz/dt = w`` gives
``drh/dt = (w - u . grad b - rh (dH/dt + u . grad H)) / H``, where ``dH/dt``
is the thickness change since the previous step; ``rh`` stays in [0, 1].
A particle is removed when it leaves the domain or the ice
(``thk < thk_min`` where it is).

Carried, per particle, in ``state.particles`` (a dict of 1-D tensors, for
the outputs): ``id``, ``t_seed`` (yr), ``x``, ``y`` (m), ``z`` (m a.s.l.),
``rh`` (1), ``englt`` (englacial time: years spent below the surface).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError
from igm_core.state import Field
from igm_plugins.processes.vert_flow import gradient

log = logging.getLogger("igm")

KEY = "processes.particles"


@dataclass
class Params:
    frequency_seeding: float = 50.0  # years between seedings
    density_seeding: float = 0.2  # particles per grid cell of the seeding area
    thk_min: float = 1.0  # m: ice thinner than this neither gets nor keeps particles
    seed: int = 0  # seed of the random positions (reproducible runs)

    def __post_init__(self) -> None:
        for key in ("frequency_seeding", "density_seeding"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{KEY}.{key} must be positive, got {getattr(self, key)}")


VARIABLES = {
    "id": Field("particles.id", "1", "particle number"),
    "t_seed": Field("particles.t_seed", "yr", "time of seeding"),
    "x": Field("particles.x", "m", "x coordinate"),
    "y": Field("particles.y", "m", "y coordinate"),
    "z": Field("particles.z", "m", "elevation"),
    "rh": Field("particles.rh", "1", "relative height above the bed (0 bed, 1 surface)"),
    "englt": Field("particles.englt", "yr", "englacial time (years below the surface)"),
}
requires = ("U", "V", "W", "zeta", "thk", "topg", "smb")
provides = (Field("particles", "1", "particles for the outputs: dict of 1-D arrays",
                  dims=("particle",)),)


@dataclass
class Tracker:
    """What the process keeps between steps (a checkpoint saves every field)."""

    rng: np.random.Generator  # random positions of new particles
    next_seeding: float | None  # yr; None before the first seeding
    next_id: int
    thk_prev: Any  # thickness (m, (ny, nx)) at the previous step, for dH/dt


def empty() -> dict[str, Any]:
    """No particles: each variable as an empty 1-D tensor."""
    import tensorflow as tf

    return {k: tf.zeros([0], tf.int64 if k == "id" else tf.float64) for k in VARIABLES}


@dataclass(frozen=True)
class Lattice:
    """Where the grid nodes are: first cell centre (m), cell size (m), shape."""

    x0: float
    y0: float
    dx: float
    ny: int
    nx: int

    @classmethod
    def of(cls, state) -> Lattice:
        ny, nx = state.grid.shape
        return cls(float(state.x[0]), float(state.y[0]), float(state.dx), ny, nx)


def corners(x: Any, y: Any, lattice: Lattice) -> tuple[Any, Any, Any, int]:
    """For points (x, y) (m, float64, (p,)): the flat indices (int64, (p,))
    of the south-west cell of the four around each point, the bilinear
    weights (float64, (p,)) along x and y, constant beyond the outermost
    cell centres, and the grid's row length nx."""
    import tensorflow as tf

    ny, nx = lattice.ny, lattice.nx
    fx = tf.clip_by_value((x - lattice.x0) / lattice.dx, 0.0, nx - 1.0)
    fy = tf.clip_by_value((y - lattice.y0) / lattice.dx, 0.0, ny - 1.0)
    i0 = tf.minimum(tf.floor(fx), nx - 2.0)
    j0 = tf.minimum(tf.floor(fy), ny - 2.0)
    sw = tf.cast(j0, tf.int64) * nx + tf.cast(i0, tf.int64)
    return sw, fx - i0, fy - j0, nx


def interpolate(fields: Any, at: tuple[Any, Any, Any, int]) -> Any:
    """Fields (k, ny, nx) at the points of :func:`corners` ``at``: (k, p)
    float64. Only the four values around each point are read (and cast to
    float64), not the whole grid."""
    import tensorflow as tf

    sw, wx, wy, nx = at
    flat = tf.reshape(fields, [tf.shape(fields)[0], -1])

    def value(offset):
        return tf.cast(tf.gather(flat, sw + offset, axis=1), tf.float64)

    return ((1 - wy) * ((1 - wx) * value(0) + wx * value(1))
            + wy * ((1 - wx) * value(nx) + wx * value(nx + 1)))


def bilinear(fields: Any, x: Any, y: Any, lattice: Lattice) -> Any:
    """Fields (k, ny, nx) at the points (x, y) (m, float64): (k, p) float64,
    constant beyond the outermost cell centres."""
    return interpolate(fields, corners(x, y, lattice))


def on_levels(values: Any, zeta: Any, rh: Any) -> Any:
    """Linear interpolation of ``values`` (nz, p) on the levels ``zeta``
    (nz,) at the relative heights ``rh`` (p,)."""
    import tensorflow as tf

    zeta = tf.cast(zeta, tf.float64)
    nz = int(zeta.shape[0])
    k = tf.clip_by_value(tf.searchsorted(zeta, rh, side="right") - 1, 0, nz - 2)
    lo, hi = tf.gather(zeta, k), tf.gather(zeta, k + 1)
    w = tf.clip_by_value((rh - lo) / (hi - lo), 0.0, 1.0)
    cols = tf.transpose(values)  # (p, nz)
    below = tf.gather(cols, k, batch_dims=1)
    above = tf.gather(cols, k + 1, batch_dims=1)
    return (1 - w) * below + w * above


def seed(params: Params, state, tracker: Tracker) -> None:
    """Add new particles at the surface of the accumulation area."""
    import tensorflow as tf

    thk = np.asarray(state.thk)
    where = np.flatnonzero((np.asarray(state.smb) > 0) & (thk > params.thk_min))
    whole, frac = divmod(params.density_seeding, 1.0)
    counts = int(whole) + (tracker.rng.random(where.size) < frac).astype(int)
    cells = np.repeat(where, counts)
    n = cells.size
    if n == 0:
        return
    jy, ix = np.divmod(cells, state.grid.shape[1])
    x = state.x[ix] + state.dx * (tracker.rng.random(n) - 0.5)
    y = state.y[jy] + state.dx * (tracker.rng.random(n) - 0.5)
    new = {
        "id": tf.range(tracker.next_id, tracker.next_id + n, dtype=tf.int64),
        "t_seed": tf.fill([n], tf.constant(float(state.t), tf.float64)),
        "x": tf.constant(x, tf.float64),
        "y": tf.constant(y, tf.float64),
        "rh": tf.ones([n], tf.float64),
        "englt": tf.zeros([n], tf.float64),
    }
    usurf = bilinear(tf.stack([state.topg + state.thk]), new["x"], new["y"],
                     Lattice.of(state))[0]
    new["z"] = usurf
    tracker.next_id += n
    state.particles = {k: tf.concat([state.particles[k], new[k]], axis=0) for k in VARIABLES}
    log.debug("%s: seeded %d particles at t=%g", KEY, n, float(state.t))


@cache
def _mover(lattice: Lattice, thk_min: float, nz: int) -> Any:
    """The compiled particle step on a grid of ``nz`` levels (built once per
    grid)."""
    import tensorflow as tf

    half = 0.5 * lattice.dx
    x_max = lattice.x0 + (lattice.nx - 1) * lattice.dx + half
    y_max = lattice.y0 + (lattice.ny - 1) * lattice.dx + half

    # one trace for any number of particles: a graph traced for a fixed count
    # may be optimised differently (sums regrouped), and a run continued from
    # a checkpoint must compute exactly what the run in one piece did
    grid2 = tf.TensorSpec([lattice.ny, lattice.nx], tf.float32)
    grid3 = tf.TensorSpec([nz, lattice.ny, lattice.nx], tf.float32)
    each = {k: tf.TensorSpec([None], tf.int64 if k == "id" else tf.float64) for k in VARIABLES}

    @tf.function(autograph=False,
                 input_signature=[grid3, grid3, grid3, tf.TensorSpec([nz], tf.float64), grid2,
                                  grid2, grid2, each, tf.TensorSpec([], tf.float64)])
    def move(U, V, W, zeta, thk, topg, dhdt, particles, dt):
        x, y, rh, englt = particles["x"], particles["y"], particles["rh"], particles["englt"]
        bx, by = gradient(topg, lattice.dx)
        hx, hy = gradient(thk, lattice.dx)
        at = corners(x, y, lattice)
        u = on_levels(interpolate(U, at), zeta, rh)
        v = on_levels(interpolate(V, at), zeta, rh)
        w = on_levels(interpolate(W, at), zeta, rh)
        h, bx, by, hx, hy, dh = tf.unstack(interpolate(tf.stack([thk, bx, by, hx, hy, dhdt]), at))
        drh = (w - u * bx - v * by - rh * (dh + u * hx + v * hy)) / tf.maximum(h, thk_min)
        rh = tf.clip_by_value(rh + dt * drh, 0.0, 1.0)
        x, y = x + dt * u, y + dt * v
        englt = englt + dt * tf.cast(rh < 1.0, tf.float64)
        inside = ((x >= lattice.x0 - half) & (x <= x_max)
                  & (y >= lattice.y0 - half) & (y <= y_max))
        geometry = bilinear(tf.stack([thk, topg]), x, y, lattice)
        keep = inside & (geometry[0] >= thk_min)
        moved = dict(particles, x=x, y=y, rh=rh, englt=englt, z=geometry[1] + rh * geometry[0])
        return {k: tf.boolean_mask(v, keep) for k, v in moved.items()}

    return move


def advect(params: Params, state, dt: float, dhdt: Any) -> None:
    """Move the particles over ``dt`` years and drop those that left the
    domain or the ice."""
    import tensorflow as tf

    p = state.particles
    if int(p["x"].shape[0]) == 0:
        return
    move = _mover(Lattice.of(state), float(params.thk_min), int(state.U.shape[0]))
    state.particles = move(state.U, state.V, state.W, tf.cast(state.zeta, tf.float64), state.thk,
                           state.topg, dhdt, p, tf.constant(dt, tf.float64))


@hookimpl
def igm_process_initialize(params: Params, state) -> Tracker:
    state.declare_all(VARIABLES.values(), provider="process 'particles'")
    state.particles = empty()
    # the first seeding happens at the first update, when smb is up to date
    return Tracker(np.random.default_rng(params.seed), None, 0, state.thk)


@hookimpl
def igm_process_update(params: Params, state, memory: Tracker) -> None:
    dt = float(state.dt)
    if dt > 0:
        advect(params, state, dt, (state.thk - memory.thk_prev) / dt)
        memory.thk_prev = state.thk
    if memory.next_seeding is None or float(state.t) >= memory.next_seeding - 1e-6:
        seed(params, state, memory)
        start = float(state.t) if memory.next_seeding is None else memory.next_seeding
        memory.next_seeding = start + params.frequency_seeding

"""Process ``vert_flow``: vertical ice velocity W on the ice-flow levels.

The levels sit at heights ``z = b + zeta H`` (bed ``b = topg``, thickness
``H = thk``, ``zeta`` from the iceflow process). With the horizontal
velocities ``U``, ``V`` (nz, ny, nx, m/yr) and no melt at the bed
(``w_b = u_b . grad b``), incompressibility ``div u + dw/dz = 0`` gives W
(m/yr) in two equivalent discrete forms:

- ``kinematic`` (default): the kinematic condition of the ice below each
  level, ``W = u . grad(b + zeta H) - div(H Q)`` with ``Q(zeta)`` the
  integral of the horizontal velocity from the bed to ``zeta``;
- ``incompressibility``: ``W = w_b - integral over the column of the
  horizontal divergence at constant z``, the terrain-following chain rule
  included: ``H div_z u = H div_zeta u - du/dzeta . grad(b + zeta H)``.

Horizontal derivatives are centred differences (one-sided at the domain
edge), integrals in ``zeta`` trapezoidal; W is 0 where there is no ice.
``wvelsurf`` is W at the surface level.

W is computed on the window around the ice (its bounding box grown by
:data:`WINDOW_MARGIN` cells, kept from step to step as the process's
memory) and padded with zeros: the cost follows the glacier, not the
domain. Every ice cell's centred differences stay inside the window, so
the result is the whole grid's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from igm_core import Choice, hookimpl
from igm_plugins._window import IceWindow, pad_to_grid, window_bounds

KEY = "processes.vert_flow"
WINDOW_MARGIN = 2  # cells around the ice (centred differences need 1)


class Method(Choice):
    kinematic = "kinematic"  # from the kinematic boundary condition at the bed and surface
    incompressibility = "incompressibility"  # integrated upwards from the bed


@dataclass
class Params:
    method: Method = Method.kinematic  # kinematic or incompressibility


requires = ("U", "V", "zeta", "thk", "topg")
provides = ("W", "wvelsurf")


def gradient(f: Any, dx: float) -> tuple[Any, Any]:
    """(df/dx, df/dy) of a field on (..., ny, nx) with cell size ``dx`` (m):
    centred inside, one-sided at the edges (needs 2 cells per axis)."""
    import tensorflow as tf

    def along_x(a):
        inner = (a[..., 2:] - a[..., :-2]) / (2 * dx)
        return tf.concat([(a[..., 1:2] - a[..., :1]) / dx, inner,
                          (a[..., -1:] - a[..., -2:-1]) / dx], axis=-1)

    def along_y(a):
        inner = (a[..., 2:, :] - a[..., :-2, :]) / (2 * dx)
        return tf.concat([(a[..., 1:2, :] - a[..., :1, :]) / dx, inner,
                          (a[..., -1:, :] - a[..., -2:-1, :]) / dx], axis=-2)

    return along_x(f), along_y(f)


def cumulative_trapezoid(f: Any, zeta: Any) -> Any:
    """Integral of ``f`` (nz, ...) over ``zeta`` from level 0 to each level."""
    import tensorflow as tf

    dz = tf.reshape(zeta[1:] - zeta[:-1], [-1] + [1] * (f.shape.rank - 1))
    steps = 0.5 * (f[1:] + f[:-1]) * dz
    return tf.concat([tf.zeros_like(f[:1]), tf.cumsum(steps, axis=0)], axis=0)


def d_dzeta(f: Any, zeta: Any) -> Any:
    """Derivative of ``f`` (nz, ...) along ``zeta``: centred inside,
    one-sided at the bed and surface levels."""
    import tensorflow as tf

    z = tf.reshape(zeta, [-1] + [1] * (f.shape.rank - 1))
    if f.shape[0] < 3:
        return tf.repeat((f[1:] - f[:-1]) / (z[1:] - z[:-1]), f.shape[0], axis=0)
    inner = (f[2:] - f[:-2]) / (z[2:] - z[:-2])
    first = (f[1:2] - f[:1]) / (z[1:2] - z[:1])
    last = (f[-1:] - f[-2:-1]) / (z[-1:] - z[-2:-1])
    return tf.concat([first, inner, last], axis=0)


def vertical_velocity(U: Any, V: Any, zeta: Any, thk: Any, topg: Any, dx: float,
                      method: str = "kinematic") -> Any:
    """W (nz, ny, nx, m/yr) from U, V (nz, ny, nx, m/yr), zeta (nz,),
    thickness and bed (ny, nx, m), cell size ``dx`` (m)."""
    import tensorflow as tf

    zeta = tf.cast(zeta, tf.float32)
    z3 = tf.reshape(zeta, [-1, 1, 1])
    bx, by = gradient(topg, dx)
    hx, hy = gradient(thk, dx)
    level_x = bx + z3 * hx  # slope of the level z = b + zeta H
    level_y = by + z3 * hy
    if method == "kinematic":
        qx, _ = gradient(thk * cumulative_trapezoid(U, zeta), dx)
        _, qy = gradient(thk * cumulative_trapezoid(V, zeta), dx)
        w = U * level_x + V * level_y - (qx + qy)
    else:
        ux, _ = gradient(U, dx)
        _, vy = gradient(V, dx)
        h_div = thk * (ux + vy) - d_dzeta(U, zeta) * level_x - d_dzeta(V, zeta) * level_y
        w_base = U[0] * bx + V[0] * by
        w = w_base - cumulative_trapezoid(h_div, zeta)
    return tf.where(thk > 0, w, tf.zeros_like(w))


@cache
def _compiled(method: str, dx: float) -> Any:
    """W (nz, ny, nx, m/yr) computed on a window and padded with zeros, and
    its surface level, in one compiled call; the window's rows and columns
    are (start, stop) tensors, so one trace serves every window."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def windowed(U, V, zeta, thk, topg, rows, cols):
        r0, r1, c0, c1 = rows[0], rows[1], cols[0], cols[1]
        W = pad_to_grid(vertical_velocity(U[:, r0:r1, c0:c1], V[:, r0:r1, c0:c1], zeta,
                                          thk[r0:r1, c0:c1], topg[r0:r1, c0:c1], dx, method),
                        rows, cols, thk)
        return W, W[-1]

    return windowed


def update(params: Params, state, window: IceWindow) -> None:
    """Recompute ``state.W`` and ``state.wvelsurf`` on the ``window`` around the ice."""
    import tensorflow as tf

    where = window.follow(state.thk)
    if where is None:
        state.W = tf.zeros_like(state.U)
        state.wvelsurf = state.W[-1]
        return
    state.W, state.wvelsurf = _compiled(params.method, float(state.dx))(
        state.U, state.V, state.zeta, state.thk, state.topg, *window_bounds(where))


@hookimpl
def igm_process_initialize(params: Params, state) -> IceWindow:
    window = IceWindow(WINDOW_MARGIN, 0.0, KEY)
    update(params, state, window)
    return window


@hookimpl
def igm_process_update(params: Params, state, memory: IceWindow) -> None:
    update(params, state, memory)

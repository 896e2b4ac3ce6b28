"""Ice-flow physics in TensorFlow: vertical levels, the Blatter-Pattyn energy,
the closed-form shallow-ice velocities and the derived 2-D velocity fields.

Units: m, yr, MPa. Velocities U, V are (Nz, ny, nx) on the grid nodes and on
terrain-following levels ``zeta`` (0 = bed, 1 = surface), bilinear in each
cell (between four nodes). The viscous integrand is evaluated at the 2x2
Gauss points of each cell and the layer mid-points (full quadrature, so no
checkerboard mode escapes the energy); geometry, gravity work and A at cell
centres; friction on the nodes. On a periodic grid the cells wrap around. The discretisation
follows the choices listed in ``shared/reference/ice-flow-physics.md``
(Dukowicz, Price & Lipscomb 2010).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf


def vertical_levels(nz: int, vert_spacing: float) -> np.ndarray:
    """Relative heights ``zeta`` (nz,) in [0, 1], float32.

    The layer thicknesses grow linearly from the bed to the surface: the top
    layer is ``vert_spacing`` times thicker than the bottom one (1 gives
    uniform layers).
    """
    if nz < 2:
        raise ValueError("numerics.Nz must be at least 2")
    k = np.arange(nz - 1, dtype="float64")
    widths = 1.0 + (vert_spacing - 1.0) * k / max(nz - 2, 1)
    zeta = np.concatenate([[0.0], np.cumsum(widths)]) / widths.sum()
    return zeta.astype("float32")


@dataclass(frozen=True)
class FlowConstants:
    """Physical constants of the flow (Python floats, m/yr/MPa units)."""

    n: float = 3.0  # Glen exponent
    m: float = 3.0  # Weertman exponent
    enhancement: float = 1.0  # enhancement factor E
    regu_glen: float = 1e-5  # strain-rate regularisation eps_0 (yr^-1)
    regu_weertman: float = 1e-10  # sliding-speed regularisation u_0 (m/yr)
    rho_g: float = 910.0 * 9.81e-6  # rho g (MPa/m)
    thr_ice_thk: float = 0.1  # ice thinner than this carries no flow (m)
    sliding: bool = True  # False: no-slip bed, the basal velocity is zero
    frozen_bed_speed: float = 1e-3  # slower Weertman sliding at the driving stress: no slip (m/yr)


# -- staggering --------------------------------------------------------------

def _wrap(f: tf.Tensor, periodic: bool) -> tf.Tensor:
    """Append the first row and column at the end on a periodic grid."""
    if not periodic:
        return f
    f = tf.concat([f, f[..., :1, :]], axis=-2)
    return tf.concat([f, f[..., :, :1]], axis=-1)


def _avg4(f: tf.Tensor) -> tf.Tensor:
    """Mean of the four nodes around each cell: (..., ny-1, nx-1)."""
    return 0.25 * (f[..., :-1, :-1] + f[..., :-1, 1:] + f[..., 1:, :-1] + f[..., 1:, 1:])


def _ddx(f: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
    """x-derivative at cell centres (per metre)."""
    return (f[..., :-1, 1:] - f[..., :-1, :-1] + f[..., 1:, 1:] - f[..., 1:, :-1]) / (2.0 * dx)


def _ddy(f: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
    """y-derivative at cell centres (per metre)."""
    return (f[..., 1:, :-1] - f[..., :-1, :-1] + f[..., 1:, 1:] - f[..., :-1, 1:]) / (2.0 * dx)


_GA, _GB = (1.0 + 3.0**-0.5) / 2.0, (1.0 - 3.0**-0.5) / 2.0
_GAUSS_2X2 = ((_GA, _GA), (_GA, _GB), (_GB, _GA), (_GB, _GB))
"""Weights (of the left/bottom node, in x and y) of the 2x2 Gauss points of a cell."""


def _gauss_weights(rank: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The x and y weights of :data:`_GAUSS_2X2` shaped (4, 1, ..., 1) to
    broadcast a field of ``rank`` dimensions over the four Gauss points
    (one set of operations for the four, not four: the graph to trace and
    differentiate is that much smaller)."""
    shape = [len(_GAUSS_2X2)] + [1] * rank
    return (tf.reshape(tf.constant([w[0] for w in _GAUSS_2X2]), shape),
            tf.reshape(tf.constant([w[1] for w in _GAUSS_2X2]), shape))


def _interp(f: tf.Tensor, wx: tf.Tensor, wy: tf.Tensor) -> tf.Tensor:
    """Bilinear value at a point of each cell, ``wx``/``wy`` the weights of the
    left/bottom nodes: (..., ny-1, nx-1)."""
    return (wy * (wx * f[..., :-1, :-1] + (1 - wx) * f[..., :-1, 1:])
            + (1 - wy) * (wx * f[..., 1:, :-1] + (1 - wx) * f[..., 1:, 1:]))


def _grad(f: tf.Tensor, wx: tf.Tensor, wy: tf.Tensor, dx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Gradient of the bilinear interpolant at a point of each cell (per metre)."""
    gx = (wy * (f[..., :-1, 1:] - f[..., :-1, :-1])
          + (1 - wy) * (f[..., 1:, 1:] - f[..., 1:, :-1])) / dx
    gy = (wx * (f[..., 1:, :-1] - f[..., :-1, :-1])
          + (1 - wx) * (f[..., 1:, 1:] - f[..., :-1, 1:])) / dx
    return gx, gy


def node_gradient(f: tf.Tensor, dx: float, periodic: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Centred gradient (df/dx, df/dy) of a 2-D field on the nodes (per metre):
    one-sided at the edges of a non-periodic grid, wrapped on a periodic one."""
    if periodic:
        gx = (tf.roll(f, -1, axis=-1) - tf.roll(f, 1, axis=-1)) / (2.0 * dx)
        gy = (tf.roll(f, -1, axis=-2) - tf.roll(f, 1, axis=-2)) / (2.0 * dx)
        return gx, gy

    gx = tf.concat([f[..., :, 1:2] - f[..., :, 0:1], 0.5 * (f[..., :, 2:] - f[..., :, :-2]),
                    f[..., :, -1:] - f[..., :, -2:-1]], axis=-1) / dx
    gy = tf.concat([f[..., 1:2, :] - f[..., 0:1, :], 0.5 * (f[..., 2:, :] - f[..., :-2, :]),
                    f[..., -1:, :] - f[..., -2:-1, :]], axis=-2) / dx
    return gx, gy


def hold_velocities(U: tf.Tensor, thk: tf.Tensor, slides: tf.Tensor,
                    c: FlowConstants) -> tf.Tensor:
    """The velocities U (..., Nz, ny, nx) with zero where they are held:
    off the ice (``thk <= thr_ice_thk``, m) and, for the basal level, on a
    bed that does not slide (``slides`` from :func:`sliding_nodes`).

    The basal level and the levels above are masked apart and joined: one
    3-D mask broadcast from the level index made XLA's energy and gradient
    3.6 times slower on the CPU (56 against 15 ms on 128 x 128 nodes)."""
    ice = tf.cast(thk > c.thr_ice_thk, U.dtype)
    return tf.concat([U[..., :1, :, :] * (ice * slides)[..., None, :, :],
                      U[..., 1:, :, :] * ice[..., None, :, :]], axis=-3)


def sliding_nodes(thk: tf.Tensor, usurf: tf.Tensor, slidingco: tf.Tensor, dx: tf.Tensor,
                  slope: tf.Tensor, c: FlowConstants, periodic: bool) -> tf.Tensor:
    """1 on the nodes whose bed slides, 0 where it is frozen (no slip), on
    (..., ny, nx): frozen where Weertman's sliding speed at the local
    driving stress, ``(rho g H |grad s| / C)^m`` (m/yr), is below
    ``c.frozen_bed_speed``; ``C <= 0`` (free slip) slides; nothing slides
    without sliding. A frozen node's basal velocity is held at zero: the
    friction's curvature there (``C/m u_b^(1/m-1)`` at u_b ~ 1e-8 m/yr for
    C = 100 MPa) would otherwise stall the minimiser far from the answer,
    which the no-slip bed gives to within the neglected sliding speed."""
    if not c.sliding:
        return tf.zeros_like(thk)
    gx, gy = node_gradient(usurf, dx, periodic)
    taud = c.rho_g * thk * tf.sqrt((gx + slope[0]) ** 2 + (gy + slope[1]) ** 2)
    safe_c = tf.where(slidingco > 0, slidingco, 1.0)
    speed = (taud / safe_c) ** c.m
    return tf.cast((slidingco <= 0) | (speed >= c.frozen_bed_speed), thk.dtype)


class ColumnStrain(NamedTuple):
    """The viscous terms of the energy on the cell layers (..., Nz-1, ny-1,
    nx-1; ny, nx on a periodic grid): ice thickness Hc (m, its floor
    ``thr_ice_thk`` in Hsafe), layer thickness dzc (relative), hardness B
    (MPa yr^(1/n)), the squared effective strain rate (yr^-2) at the 2x2
    Gauss points (a leading axis of 4 on the layers' shape), the
    layer-mean velocities Um, Vm (on the nodes, m/yr) and the surface
    slopes dsdx, dsdy."""

    Hc: tf.Tensor
    Hsafe: tf.Tensor
    dzc: tf.Tensor
    B: tf.Tensor
    eff2: tf.Tensor
    Um: tf.Tensor
    Vm: tf.Tensor
    dsdx: tf.Tensor
    dsdy: tf.Tensor


def _cell_columns(thk: tf.Tensor, usurf: tf.Tensor, dx: tf.Tensor, zeta: tf.Tensor,
                  slope: tf.Tensor, c: FlowConstants,
                  periodic: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The cells' ice thickness Hc (..., 1, ny-1, nx-1, m; 0 off the
    ice), relative layer thickness dzc (Nz-1, 1, 1) and surface slopes
    dsdx, dsdy (..., 1, ny-1, nx-1; ny, nx on a periodic grid)."""
    ice = tf.cast(thk > c.thr_ice_thk, thk.dtype)
    Hc = _avg4(_wrap(thk * ice, periodic))[..., None, :, :]
    dsdx = _ddx(_wrap(usurf, periodic), dx)[..., None, :, :] + slope[0]
    dsdy = _ddy(_wrap(usurf, periodic), dx)[..., None, :, :] + slope[1]
    return Hc, (zeta[1:] - zeta[:-1])[:, None, None], dsdx, dsdy


def _layer_mean(F: tf.Tensor, periodic: bool) -> tf.Tensor:
    """Mean of the two levels around each layer of F (..., Nz, ny, nx): (..., Nz-1, ny, nx)."""
    Fw = _wrap(F, periodic)
    return 0.5 * (Fw[..., 1:, :, :] + Fw[..., :-1, :, :])


def column_strain(U: tf.Tensor, V: tf.Tensor, thk: tf.Tensor, usurf: tf.Tensor,
                  arrhenius: tf.Tensor, dx: tf.Tensor, zeta: tf.Tensor, slope: tf.Tensor,
                  c: FlowConstants, periodic: bool) -> ColumnStrain:
    """Strain rates of the (masked) velocities U, V (Nz, ny, nx, m/yr) in
    the terrain-following layers, see :class:`ColumnStrain`; shared by the
    energy and the solver's preconditioner."""
    n = c.n
    Hc, dzc, dsdx, dsdy = _cell_columns(thk, usurf, dx, zeta, slope, c, periodic)
    bed = usurf - thk
    dbdx = _ddx(_wrap(bed, periodic), dx)[..., None, :, :] + slope[0]
    dbdy = _ddy(_wrap(bed, periodic), dx)[..., None, :, :] + slope[1]
    zmid = (0.5 * (zeta[1:] + zeta[:-1]))[:, None, None]
    Um, Vm = _layer_mean(U, periodic), _layer_mean(V, periodic)
    Uw, Vw = _wrap(U, periodic), _wrap(V, periodic)
    Uz = Uw[..., 1:, :, :] - Uw[..., :-1, :, :]
    Vz = Vw[..., 1:, :, :] - Vw[..., :-1, :, :]
    Hsafe = tf.maximum(Hc, c.thr_ice_thk)
    dzdx = (1.0 - zmid) * dbdx + zmid * dsdx
    dzdy = (1.0 - zmid) * dbdy + zmid * dsdy
    A = arrhenius
    if A.shape.rank == thk.shape.rank:
        Ac = _avg4(_wrap(A, periodic))[..., None, :, :]
    else:
        Aw = _wrap(A, periodic)
        Ac = _avg4(0.5 * (Aw[..., 1:, :, :] + Aw[..., :-1, :, :]))
    B = (c.enhancement * Ac) ** (-1.0 / n)
    # bilinear velocities, 2x2 Gauss points (no hourglass modes), all four at once
    wx, wy = _gauss_weights(Um.shape.rank)
    dUdz = _interp(Uz, wx, wy) / dzc / Hsafe
    dVdz = _interp(Vz, wx, wy) / dzc / Hsafe
    dUdx, dUdy = _grad(Um, wx, wy, dx)
    dVdx, dVdy = _grad(Vm, wx, wy, dx)
    exx = dUdx - dzdx * dUdz
    eyy = dVdy - dzdy * dVdz
    exy = 0.5 * (dUdy - dzdy * dUdz + dVdx - dzdx * dVdz)
    eff2 = (exx**2 + eyy**2 + exx * eyy + exy**2 + 0.25 * dUdz**2 + 0.25 * dVdz**2
            + c.regu_glen**2)
    return ColumnStrain(Hc, Hsafe, dzc, B, eff2, Um, Vm, dsdx, dsdy)


# -- the energy ----------------------------------------------------------------

def held_velocities(U: tf.Tensor, V: tf.Tensor, thk: tf.Tensor, usurf: tf.Tensor,
                    slidingco: tf.Tensor, dx: tf.Tensor, slope: tf.Tensor, c: FlowConstants,
                    periodic: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """U, V (..., Nz, ny, nx, m/yr) held at zero off the ice and on frozen
    beds (see :func:`hold_velocities`), the ice indicator and the sliding
    nodes (..., ny, nx; 1 or 0); shared by the energy and the solver's
    preconditioner."""
    ice = tf.cast(thk > c.thr_ice_thk, U.dtype)
    slides = sliding_nodes(thk, usurf, slidingco, dx, slope, c, periodic)
    return hold_velocities(U, thk, slides, c), hold_velocities(V, thk, slides, c), ice, slides


def _per_ice_node(total: tf.Tensor, ice: tf.Tensor) -> tf.Tensor:
    """A sum over each grid (..., ) divided by its ice nodes, averaged over a batch."""
    return tf.reduce_mean(total / tf.maximum(tf.reduce_sum(ice, axis=[-2, -1]), 1.0))


def _gravity_columns(Um: tf.Tensor, Vm: tf.Tensor, dsdx: tf.Tensor, dsdy: tf.Tensor,
                     c: FlowConstants) -> tf.Tensor:
    """The work of gravity in each layer of each cell (MPa m/yr per m), of
    the layer-mean velocities (on the nodes) and the cells' surface slopes."""
    return c.rho_g * (_avg4(Um) * dsdx + _avg4(Vm) * dsdy)


def energy(U: tf.Tensor, V: tf.Tensor, thk: tf.Tensor, usurf: tf.Tensor,
           arrhenius: tf.Tensor, slidingco: tf.Tensor, dx: tf.Tensor,
           zeta: tf.Tensor, slope: tf.Tensor, c: FlowConstants,
           periodic: bool) -> tf.Tensor:
    """Blatter-Pattyn energy J(U, V) per ice node (MPa m/yr, scalar).

    ``U``, ``V``: (Nz, ny, nx) m/yr (zero where ``thk <= thr_ice_thk``
    is imposed here); ``thk``, ``usurf``: (ny, nx) m; ``arrhenius``:
    (ny, nx) or (Nz, ny, nx) MPa^-n/yr; ``slidingco``: (ny, nx)
    MPa yr^(1/m) m^(-1/m); ``dx`` (m); ``zeta`` (Nz,); ``slope`` (2,): a
    mean surface slope (ds/dx, ds/dy) added to the gradient of ``usurf``
    (for periodic benchmarks whose surface is an inclined plane). Also
    works with a leading batch axis on every field (B, ...).
    """
    n, m = c.n, c.m
    U, V, ice, slides = held_velocities(U, V, thk, usurf, slidingco, dx, slope, c, periodic)
    col = column_strain(U, V, thk, usurf, arrhenius, dx, zeta, slope, c, periodic)
    visc = tf.reduce_sum(0.25 * (2.0 * n / (n + 1.0)) * col.B
                         * col.eff2 ** ((n + 1.0) / (2.0 * n)), axis=0)
    gravity = _gravity_columns(col.Um, col.Vm, col.dsdx, col.dsdy, c)
    column = tf.reduce_sum(col.Hc * col.dzc * (visc + gravity), axis=[-3, -2, -1])
    base = 0.0
    if c.sliding:
        ub2 = U[..., 0, :, :] ** 2 + V[..., 0, :, :] ** 2 + c.regu_weertman**2
        fric = (m / (m + 1.0)) * slidingco * ub2 ** ((m + 1.0) / (2.0 * m)) * ice * slides
        base = tf.reduce_sum(fric, axis=[-2, -1])
    return _per_ice_node(column + base, ice)


def work_of_gravity(U: tf.Tensor, V: tf.Tensor, thk: tf.Tensor, usurf: tf.Tensor,
                    arrhenius: tf.Tensor, slidingco: tf.Tensor, dx: tf.Tensor,
                    zeta: tf.Tensor, slope: tf.Tensor, c: FlowConstants,
                    periodic: bool) -> tf.Tensor:
    """The gravity term of :func:`energy` alone (MPa m/yr per ice node, same
    arguments), linear in U, V: its gradient is the energy's at zero
    velocity, where the viscous and friction terms have zero gradient (the
    driving stress, the yardstick of the solver's residual), at a fraction
    of the cost of the whole energy's."""
    U, V, ice, _ = held_velocities(U, V, thk, usurf, slidingco, dx, slope, c, periodic)
    Hc, dzc, dsdx, dsdy = _cell_columns(thk, usurf, dx, zeta, slope, c, periodic)
    gravity = _gravity_columns(_layer_mean(U, periodic), _layer_mean(V, periodic), dsdx, dsdy, c)
    return _per_ice_node(tf.reduce_sum(Hc * dzc * gravity, axis=[-3, -2, -1]), ice)


# -- shallow ice ---------------------------------------------------------------

def _sia_coefficients(H: tf.Tensor, grad: tf.Tensor, A: tf.Tensor, slidingco: tf.Tensor,
                      c: FlowConstants) -> tuple[tf.Tensor, tf.Tensor]:
    """Shallow-ice speed per unit surface slope (m/yr): the deformation
    coefficient ``2A/(n+1) (rho g)^n H^(n+1) |grad s|^(n-1)`` (its surface
    value; the depth mean is (n+1)/(n+2) of it) and the sliding coefficient
    ``(rho g H |grad s| / C)^m / |grad s|`` (0 where C <= 0 or without
    sliding), for thickness H (m), slope magnitude ``grad``, A (MPa^-n/yr)
    and C, all of one shape."""
    n, m = c.n, c.m
    deform = 2.0 * A / (n + 1.0) * c.rho_g**n * H ** (n + 1.0) * grad ** (n - 1.0)
    taub = c.rho_g * H * grad
    safe_c = tf.where(slidingco > 0, slidingco, 1.0)
    speed_b = tf.where(slidingco > 0, (taub / safe_c) ** m, 0.0) * float(c.sliding)
    return deform, tf.math.divide_no_nan(speed_b, grad)


def _depth_mean_a(arrhenius: tf.Tensor, c: FlowConstants) -> tf.Tensor:
    """E A on (ny, nx): a 3-D ``arrhenius`` enters through its depth mean."""
    A = arrhenius if arrhenius.shape.rank == 2 else tf.reduce_mean(arrhenius, axis=0)
    return c.enhancement * A


def sia_velocity(thk: tf.Tensor, usurf: tf.Tensor, arrhenius: tf.Tensor,
                 slidingco: tf.Tensor, dx: float, zeta: tf.Tensor,
                 slope: tuple[float, float], c: FlowConstants,
                 periodic: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Closed-form shallow-ice velocities: U, V (Nz, ny, nx) and the exact
    depth means ubar, vbar (ny, nx), all in m/yr.

    Deformation ``-2A/(n+1) (rho g)^n H^(n+1) (1 - (1-zeta)^(n+1))
    |grad s|^(n-1) grad s`` (depth mean: factor (n+1)/(n+2) on the surface
    value) plus Weertman sliding of speed ``(rho g H |grad s| / C)^m`` along
    ``-grad s``, with ``grad s`` from centred differences on the nodes. A
    3-D ``arrhenius`` enters through its depth mean. Zero where
    ``thk <= thr_ice_thk``; no sliding where ``C <= 0`` or without sliding.
    """
    n = c.n
    ice = tf.cast(thk > c.thr_ice_thk, tf.float32)
    gx, gy = node_gradient(usurf, dx, periodic)
    gx, gy = gx + slope[0], gy + slope[1]
    deform, base = _sia_coefficients(thk * ice, tf.sqrt(gx**2 + gy**2),
                                     _depth_mean_a(arrhenius, c), slidingco, c)
    slides = sliding_nodes(thk, usurf, slidingco, dx, slope, c, periodic)
    deform, base = deform * ice, base * ice * slides
    shape = (1.0 - (1.0 - zeta[:, None, None]) ** (n + 1.0))
    coef = base[None] + deform[None] * shape
    coef_bar = base + deform * (n + 1.0) / (n + 2.0)
    return -coef * gx[None], -coef * gy[None], -coef_bar * gx, -coef_bar * gy


def _sia_xfaces(H: tf.Tensor, s: tf.Tensor, A: tf.Tensor, C: tf.Tensor, gy_node: tf.Tensor,
                node: tf.Tensor, shapes: tf.Tensor, dx: float, slope: tuple[float, float],
                c: FlowConstants, periodic: bool) -> tf.Tensor:
    """x velocities (m/yr) on the nx+1 x-faces of each row, (K, ny, nx+1),
    one per vertical shape factor in ``shapes`` (K,), from masked thickness
    H, surface s, E A, C and the node y-slope (ny, nx); ``node`` (K, ny, nx)
    holds the node velocities the edge faces of a non-periodic grid carry
    (see :func:`sia_staggered`)."""
    if periodic:  # the face after the last column joins it to the first
        H, s, A, C, gy_node = (tf.concat([f, f[:, :1]], axis=1) for f in (H, s, A, C, gy_node))

    def face(f):
        return 0.5 * (f[:, 1:] + f[:, :-1])

    sx = (s[:, 1:] - s[:, :-1]) / dx + slope[0]
    sy = face(gy_node) + slope[1]
    deform, base = _sia_coefficients(face(H), tf.sqrt(sx**2 + sy**2), face(A), face(C), c)
    u = -(base[None] + deform[None] * shapes[:, None, None]) * sx[None]
    if periodic:
        return tf.concat([u[:, :, -1:], u], axis=2)
    return tf.concat([node[:, :, :1], u, node[:, :, -1:]], axis=2)


def sia_staggered(thk: tf.Tensor, usurf: tf.Tensor, arrhenius: tf.Tensor, slidingco: tf.Tensor,
                  dx: float, zeta: tf.Tensor, slope: tuple[float, float], c: FlowConstants,
                  periodic: bool) -> tuple[tf.Tensor, ...]:
    """Shallow-ice velocities staggered as in Mahaffy (1976), m/yr: on the
    faces, ubar on the x-faces (ny, nx+1) and vbar on the y-faces
    (ny+1, nx); on the cells, U, V (Nz, ny, nx) and ubar, vbar (ny, nx),
    each the mean of the cell's two faces, so the velocity written is the
    one that moves the ice.

    The face between two nodes takes the mean of their thickness, A and C,
    the difference of their surface elevations across the face and the mean
    of their centred slopes along it. At the edges of a non-periodic grid
    the faces carry the edge nodes' centred velocities (the flow continues
    out of the domain); on a periodic grid the first and last faces are the
    one that wraps around. Thickness-transport schemes fed with the face
    velocities reproduce the accuracy of the staggered SIA at the steep
    margins of ice caps (Halfar dome). Zero on cells with
    ``thk <= thr_ice_thk``.

    Returns ``(U, V, ubar, vbar, ubar_xface, vbar_yface)``."""
    n = c.n
    ice = tf.cast(thk > c.thr_ice_thk, tf.float32)
    H, A = thk * ice, _depth_mean_a(arrhenius, c)
    U, V, ubar, vbar = sia_velocity(thk, usurf, arrhenius, slidingco, dx, zeta, slope, c,
                                    periodic)
    # the levels, then the depth mean as one more "level" of shape (n+1)/(n+2)
    shapes = tf.concat([1.0 - (1.0 - zeta) ** (n + 1.0), [(n + 1.0) / (n + 2.0)]], axis=0)
    gx, gy = node_gradient(usurf, dx, periodic)
    xf = _sia_xfaces(H, usurf, A, slidingco, gy, tf.concat([U, ubar[None]], axis=0), shapes,
                     dx, slope, c, periodic)

    def t3(f):
        return tf.transpose(f, (0, 2, 1))

    yf = t3(_sia_xfaces(*(tf.transpose(f) for f in (H, usurf, A, slidingco, gx)),
                        t3(tf.concat([V, vbar[None]], axis=0)), shapes, dx,
                        (slope[1], slope[0]), c, periodic))
    cell_u = 0.5 * (xf[:, :, 1:] + xf[:, :, :-1]) * ice
    cell_v = 0.5 * (yf[:, 1:] + yf[:, :-1]) * ice
    return cell_u[:-1], cell_v[:-1], cell_u[-1], cell_v[-1], xf[-1], yf[-1]


# -- derived fields -----------------------------------------------------------

def layer_weights(zeta: np.ndarray) -> np.ndarray:
    """Weights (Nz,) of the trapezoidal depth average on the levels."""
    dz = np.diff(zeta)
    w = np.zeros_like(zeta)
    w[:-1] += 0.5 * dz
    w[1:] += 0.5 * dz
    return w.astype("float32")


def derived_fields(U: tf.Tensor, V: tf.Tensor, zeta: np.ndarray,
                   ubar: tf.Tensor | None = None,
                   vbar: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """The 2-D velocity fields (m/yr) from U, V (Nz, ny, nx); the depth means
    are the trapezoidal ones unless given."""
    w = tf.constant(layer_weights(zeta))[:, None, None]
    ubar = tf.reduce_sum(w * U, axis=0) if ubar is None else ubar
    vbar = tf.reduce_sum(w * V, axis=0) if vbar is None else vbar
    return {
        "ubar": ubar,
        "vbar": vbar,
        "uvelsurf": U[-1],
        "vvelsurf": V[-1],
        "uvelbase": U[0],
        "vvelbase": V[0],
        "velbar_mag": tf.sqrt(ubar**2 + vbar**2),
        "velsurf_mag": tf.sqrt(U[-1] ** 2 + V[-1] ** 2),
    }

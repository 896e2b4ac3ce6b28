"""Process ``thk``: ice thickness from mass conservation.

    dH/dt = -div(H ubar) + smb

solved with a finite-volume scheme: the flux ``H u`` (m2/yr) through each
cell face uses the face velocity and the upwind thickness reconstructed with a
limited slope (``slope_type``: ``superbee`` (default), ``minmod``, or
``upwind`` for first order), in Sweby's flux-limited form (the slope term
scaled by 1 - Courant number, TVD under forward Euler). Outside the domain
the thickness and velocity are continued by their edge values, so ice flows
out freely through the edges. Then H >= 0 is enforced.

Face velocities (m/yr): ``ubar_xface`` (ny, nx+1) and ``vbar_yface``
(ny+1, nx) when the flow model writes them (iceflow's ``sia`` does: the
staggered shallow-ice velocity, which keeps the steep margin of an ice cap
accurate), otherwise the mean of the two cell-centre values of ``ubar``,
``vbar``.

The fluxes are computed on the window around the ice (its bounding box grown
by :data:`WINDOW_MARGIN` cells): a face between two ice-free cells carries
no flux whatever its velocity (both reconstructions are zero), so the
window's fluxes are the whole grid's, and the cost of the transport follows
the glacier, not the domain.

Sources: ``thk`` is the one writer of the thickness. Every other process
that changes it hands a rate (m ice per year) in a field declared with
``rate_of="thk"``: the surface mass balance ``smb``, and any other source
(a basal melt plugin declares ``Field("bmb", "m yr-1", ..., rate_of="thk")``,
negative where ice melts). They are added after the transport, and the
thickness is kept >= 0.

Budget (volumes since the start of the run, m3, float64): the process keeps
them in its memory (:class:`MassBudget`) and publishes them as scalar fields
(``total``: ``output_ts.nc`` writes their mean rates in m3 yr-1 between
saves):

- ``budget_smb``: the surface mass balance over the ice (cells with ice
  after the transport, and any cell it accumulates on);
- ``budget_sources``: the other sources, counted the same way;
- ``budget_unmet_ablation``: ablation (of both) that found no ice left to
  remove, given back (>= 0);
- ``budget_outflow``: the ice that left through the domain edge (net);
- ``budget_clip``: the ice added where the transport alone would leave
  H < 0 (zero under a small enough time step).

Then ``V(t) - V(t0) = smb + sources + unmet_ablation - outflow + clip`` to
float32 round-off.

A run whose ice volume grows beyond ``volume_growth_max`` times its start
(or times 10 m of ice over the whole domain, when that is more: a run may
start without ice) stops with one line giving the budget: two orders of
magnitude in one run is no glacier's response to its climate, but an
unstable transport or a wrong mass balance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from igm_core import Choice, Field, hookimpl
from igm_core.errors import ConfigError, FieldError, PluginRuntimeError
from igm_plugins._window import ice_window, pad_to_grid, window_bounds

KEY = "processes.thk"
WINDOW_MARGIN = 2  # cells around the ice: the limiter reads two cells upwind of a face


class Slope(Choice):
    superbee = "superbee"  # second order, sharpest fronts
    minmod = "minmod"  # second order, most diffusive of the limiters
    upwind = "upwind"  # first order


@dataclass
class Params:
    slope_type: Slope = Slope.superbee  # slope limiter: superbee, minmod or upwind (first order)
    # stop when the ice volume exceeds this many times max(initial, 10 m over the domain)
    volume_growth_max: float = 100.0

    def __post_init__(self) -> None:
        if not self.volume_growth_max > 1:
            raise ConfigError(f"{KEY}.volume_growth_max must be more than 1, got "
                              f"{self.volume_growth_max}")


@dataclass
class MassBudget:
    """What the process keeps: the budget volumes since the start (m3,
    float64, see the module's docstring) and the volume that sets the
    runaway limit (m3)."""

    smb: float = 0.0
    sources: float = 0.0
    unmet_ablation: float = 0.0
    outflow: float = 0.0
    clip: float = 0.0
    volume_ref_m3: float = 0.0

    def publish(self, state) -> None:
        """Set the ``budget_*`` scalar fields (m3) from the totals."""
        for term in TERMS:
            setattr(state, f"budget_{term}", np.float64(getattr(self, term)))


TERMS = ("smb", "sources", "unmet_ablation", "outflow", "clip")


def _budget_field(term: str, long_name: str) -> Field:
    return Field(f"budget_{term}", "m3", f"{long_name} (ice volume)", dims=(), total=True)


requires = ("thk", "topg", "ubar", "vbar")
provides = ("thk", "usurf", "divflux",
            _budget_field("smb", "surface mass balance over the ice"),
            _budget_field("sources", "thickness sources other than the surface mass balance"),
            _budget_field("unmet_ablation", "ablation that found no ice to remove, given back"),
            _budget_field("outflow", "ice flux out through the domain edge"),
            _budget_field("clip", "ice added where the transport left negative thickness"))


@cache
def _kernels(slope_type: str) -> Any:
    """The compiled flux function for a limiter (built once, TF imported late)."""
    import tensorflow as tf

    def limited_slope(a, b):
        # a, b: backward and forward differences of H around a cell
        if slope_type == "upwind":
            return tf.zeros_like(a)
        same = a * b > 0
        s = tf.sign(a)
        aa, bb = tf.abs(a), tf.abs(b)
        if slope_type == "minmod":
            mag = tf.minimum(aa, bb)
        else:  # superbee: larger of minmod(2a, b) and minmod(a, 2b)
            mag = tf.maximum(tf.minimum(2 * aa, bb), tf.minimum(aa, 2 * bb))
        return tf.where(same, s * mag, tf.zeros_like(a))

    def pad_edge(a, n, axis):
        first = tf.gather(a, [0] * n, axis=axis)
        last = tf.gather(a, [tf.shape(a)[axis] - 1] * n, axis=axis)
        return tf.concat([first, a, last], axis=axis)

    def face_flux_x(h, uf, dt_dx):
        """Fluxes (m2/yr) through the nx+1 x-faces of each row: (ny, nx+1),
        from the face velocities uf (ny, nx+1)."""
        hp = pad_edge(h, 2, 1)  # cell j at column j+2
        # Sweby's flux-limited form: the slope correction shrinks with the
        # Courant number c, which keeps the forward-Euler update TVD for c <= 1
        half = 0.5 * tf.maximum(1.0 - tf.abs(uf) * dt_dx, 0.0)
        d = hp[:, 1:] - hp[:, :-1]  # d[:, k] = hp[k+1] - hp[k]
        # face j sits between cells j-1 (left, padded j+1) and j (right, padded j+2)
        left = hp[:, 1:-2] + half * limited_slope(d[:, :-2], d[:, 1:-1])
        right = hp[:, 2:-1] - half * limited_slope(d[:, 1:-1], d[:, 2:])
        return uf * tf.where(uf > 0, left, right)

    def fluxes(h, uf, vf, dt_dx):
        fx = face_flux_x(h, uf, dt_dx)
        fy = tf.transpose(face_flux_x(tf.transpose(h), tf.transpose(vf), dt_dx))
        return fx, fy

    @tf.function(reduce_retracing=True, autograph=False)
    def windowed(thk, uf, vf, dt_dx, dx, rows, cols, centred):
        # rows, cols: (start, stop) of the window as tensors (one trace for
        # all windows); centred: uf, vf are the cell-centre ubar, vbar
        r0, r1, c0, c1 = rows[0], rows[1], cols[0], cols[1]
        if centred:
            uf, vf = node_to_face(uf, vf)
        fx, fy = fluxes(thk[r0:r1, c0:c1], uf[r0:r1, c0:c1 + 1], vf[r0:r1 + 1, c0:c1], dt_dx)
        return fx, fy, pad_to_grid(divergence(fx, fy, dx), rows, cols, thk)

    return tf.function(fluxes, reduce_retracing=True, autograph=False), windowed


def node_to_face(ubar: Any, vbar: Any) -> tuple[Any, Any]:
    """Face velocities (m/yr) from cell-centre ones (ny, nx): the mean of the
    two cells beside each face, edge values continued outside the domain;
    x-faces (ny, nx+1) and y-faces (ny+1, nx)."""
    import tensorflow as tf

    up = tf.concat([ubar[:, :1], ubar, ubar[:, -1:]], axis=1)
    vp = tf.concat([vbar[:1], vbar, vbar[-1:]], axis=0)
    return 0.5 * (up[:, :-1] + up[:, 1:]), 0.5 * (vp[:-1] + vp[1:])


def face_velocities(state) -> tuple[Any, Any]:
    """The State's face velocities ``ubar_xface`` (ny, nx+1), ``vbar_yface``
    (ny+1, nx) when set (checked against the grid), else the cell-centre
    ``ubar``, ``vbar`` (ny, nx), which :func:`node_to_face` takes to the
    faces (m/yr)."""
    uf, vf = state.get("ubar_xface"), state.get("vbar_yface")
    if uf is None or vf is None:
        return state.ubar, state.vbar
    ny, nx = state.grid.shape
    for name, value, shape in (("ubar_xface", uf, (ny, nx + 1)), ("vbar_yface", vf, (ny + 1, nx))):
        if tuple(np.shape(value)) != shape:
            raise FieldError(f"{KEY}: State field '{name}' has shape {tuple(np.shape(value))}, "
                             f"expected {shape} (the faces of the {ny} x {nx} grid)")
    return uf, vf


def face_fluxes(thk: Any, ubar_xface: Any, vbar_yface: Any, dt_dx: float,
                slope_type: str = "superbee") -> tuple[Any, Any]:
    """Ice fluxes through the cell faces (m2/yr) over a step: x-faces
    (ny, nx+1) and y-faces (ny+1, nx), from thickness (m) on (ny, nx) and
    face velocities (m/yr) on the x-faces (ny, nx+1) and y-faces
    (ny+1, nx); ``dt_dx`` is the time step over the cell size (yr/m)."""
    import tensorflow as tf

    return _kernels(slope_type)[0](thk, ubar_xface, vbar_yface, tf.constant(dt_dx, tf.float32))


def windowed_transport(state, dt: float, slope_type: str) -> tuple[Any, Any, Any]:
    """The face fluxes (m2/yr) on the window around the ice, x-faces (h,
    w+1) and y-faces (h+1, w), and the flux divergence on the whole grid
    (m/yr, zero outside the window), over a step of ``dt`` yr (one
    compiled call for every window)."""
    import tensorflow as tf

    thk = state.thk
    window = ice_window(np.asarray(thk) > 0.0, WINDOW_MARGIN)
    if window is None:
        empty = tf.zeros((0, 0), tf.float32)
        return empty, empty, tf.zeros_like(thk)
    uf, vf = face_velocities(state)
    f32 = tf.float32
    return _kernels(slope_type)[1](thk, uf, vf, tf.constant(dt / state.dx, f32),
                                   tf.constant(state.dx, f32), *window_bounds(window),
                                   centred=tuple(uf.shape) == tuple(thk.shape))


def divergence(fx: Any, fy: Any, dx: float) -> Any:
    """Flux divergence (m/yr) on (ny, nx) from face fluxes (m2/yr)."""
    return (fx[:, 1:] - fx[:, :-1] + fy[1:, :] - fy[:-1, :]) / dx


def outflow_rate(fx: Any, fy: Any, dx: float) -> float:
    """Net ice volume leaving the domain through its edges (m3/yr), from
    the face fluxes of the grid or of a window around the ice (whose edges
    are the domain's, or carry no flux); 0 without faces (no ice)."""
    f64 = np.float64
    fx = np.asarray(fx, dtype=f64)
    fy = np.asarray(fy, dtype=f64)
    if fx.size == 0 or fy.size == 0:
        return 0.0
    return float(dx * (fx[:, -1].sum() - fx[:, 0].sum() + fy[-1, :].sum() - fy[0, :].sum()))


def runaway(params: Params, state, budget: MassBudget, volume_m3: float) -> PluginRuntimeError:
    """The one-line error of a volume grown past the limit, with the budget."""
    km3 = 1e-9
    added = budget.smb + budget.sources + budget.unmet_ablation
    created = max(added, 0.0) + max(budget.clip, 0.0)
    cause = ("most of it created where the transport left negative thickness: the time step is "
             "too long for the flow (processes.time.cfl, step_max) or the flow is unstable"
             if budget.clip > 0.5 * created else
             "most of it from the surface mass balance and the other sources: check their "
             "parameters and units (m ice per year)")
    return PluginRuntimeError(
        f"{KEY}: the ice volume grew to {volume_m3 * km3:.4g} km3 at t={float(state.t):.6g} yr "
        f"(step {state.it}), more than {params.volume_growth_max:g} times "
        f"{budget.volume_ref_m3 * km3:.4g} km3 (budget since the start: smb and other sources "
        f"{added * km3:+.4g}, clipping {budget.clip * km3 + 0.0:+.4g}, out through "
        f"the edges {budget.outflow * km3 + 0.0:.4g} km3); {cause}")


def source_names(state) -> list[str]:
    """The declared rates of ``thk`` other than ``smb`` (m ice per year)."""
    return [name for name, f in state.declared().items()
            if f.rate_of == "thk" and name != "smb"]


@cache
def _thickness_kernel() -> Any:
    """The compiled thickness update of :func:`thickness_after` (built once,
    TF imported late)."""
    import tensorflow as tf

    def total(a):
        return tf.reduce_sum(tf.cast(a, tf.float64))

    @tf.function(reduce_retracing=True, autograph=False)
    def after(thk, divflux, smb, other, dt):
        transported = thk - dt * divflux
        kept = tf.maximum(transported, 0.0)
        nominal = kept + dt * (smb + other)
        acts = (kept > 0) | (smb + other > 0)
        new = tf.maximum(nominal, 0.0)
        zero = tf.zeros_like(kept)
        return new, tf.stack([total(new), total(kept) - total(transported),
                              total(tf.where(acts, dt * smb, zero)),
                              total(tf.where(acts, dt * other, zero)),
                              total(tf.where(acts, new - nominal, zero))])

    return after


def thickness_after(thk: Any, divflux: Any, smb: Any, others: list[Any],
                    dt: float) -> tuple[Any, dict[str, float]]:
    """The thickness (m, (ny, nx)) after a step of ``dt`` yr: the transport
    (``divflux``, m/yr) kept >= 0, then the rates ``smb`` (None: zero) and
    ``others`` (m ice yr-1) added and the result kept >= 0; and the sums over
    the grid, in float64, of the volumes per cell area (m): ``total`` (the
    new thickness), ``clip`` (what keeping the transport >= 0 added),
    ``smb`` and ``sources`` where they act (ice, or a positive total), and
    ``unmet_ablation`` where they would remove more than the ice there."""
    import tensorflow as tf

    zero = tf.zeros_like(thk)
    smb = zero if smb is None else tf.cast(smb, tf.float32)
    other = tf.add_n([tf.cast(o, tf.float32) for o in others]) if others else zero
    new, sums = _thickness_kernel()(thk, divflux, smb, other, tf.constant(dt, tf.float32))
    return new, dict(zip(("total", "clip", "smb", "sources", "unmet_ablation"),
                         sums.numpy().tolist(), strict=True))


@hookimpl
def igm_process_initialize(params: Params, state) -> MassBudget:
    import tensorflow as tf

    state.thk = tf.maximum(tf.cast(state.thk, tf.float32), 0.0)
    state.usurf = state.topg + state.thk
    state.divflux = tf.zeros_like(state.thk)
    ny, nx = state.grid.shape
    budget = MassBudget(volume_ref_m3=max(state.ice_volume() * 1e9, 10.0 * nx * ny * state.dx**2))
    budget.publish(state)
    return budget


@hookimpl
def igm_process_update(params: Params, state, memory: MassBudget) -> None:
    dt = float(state.dt)
    if dt <= 0:
        return
    dx = state.dx
    fx, fy, state.divflux = windowed_transport(state, dt, params.slope_type)
    new, sums = thickness_after(state.thk, state.divflux, state.get("smb"),
                                [state.get(n) for n in source_names(state) if n in state], dt)
    cell = dx * dx
    total = sums.pop("total")
    if not math.isfinite(total):
        raise PluginRuntimeError(f"{KEY}: the ice thickness is no longer finite at "
                                 f"t={state.t:g} yr (the flow blew up): shorten the step "
                                 "(processes.time.cfl or step_max)")
    memory.outflow += dt * outflow_rate(fx, fy, dx)
    for term, volume in sums.items():
        setattr(memory, term, getattr(memory, term) + cell * volume)
    memory.publish(state)
    state.thk = new
    state.usurf = state.topg + new
    if cell * total > params.volume_growth_max * memory.volume_ref_m3:
        raise runaway(params, state, memory, cell * total)

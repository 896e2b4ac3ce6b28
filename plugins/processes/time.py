"""Process ``time``: the model clock.

Sets ``state.t`` (yr), ``state.t_end`` and, every step, ``state.dt`` (yr)
and ``state.saveresult``. The step obeys the CFL condition
``dt <= cfl * dx / max|u|`` on the largest depth-averaged velocity component
(``ubar``, ``vbar``, m/yr: the velocity the ``thk`` process transports the
ice with; the 3-D velocities of the particles set no limit).
When the flow model writes face velocities (``ubar_xface``, ``vbar_yface``:
iceflow's staggered ``sia``), the step also obeys the diffusive limit of the
explicit transport, ``dt <= cfl * dx^2 / (4 D)`` with ``D = |u| H / |ds/dx|``
(m2/yr) the largest effective diffusivity on the faces. The step
never exceeds ``step_max``, and lands exactly on every save time
(``start + k * save``) and on ``end``. The first update (step 0) keeps
``t = start`` with ``dt = 0`` so that processes and outputs see the
initial state.

A run whose CFL step falls below the floor ``cfl * dx / speed_max`` stops
with one line: such a step means ice faster than ``speed_max`` (50 km/yr by
default, about three times the fastest glacier ever measured, Jakobshavn
Isbrae at about 17 km/yr in 2012, Joughin et al. 2014, The Cryosphere 8,
209-214): the flow has blown up, and the run would otherwise crawl on for
ever with ever shorter steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError, PluginRuntimeError

VELOCITY_FIELDS = ("ubar", "vbar")


KEY = "processes.time"


@dataclass
class Params:
    start: float = 2000.0  # start of the simulation (yr)
    end: float = 2100.0  # end of the simulation (yr)
    save: float = 10.0  # interval between saved results (yr)
    cfl: float = 0.3  # CFL number (dimensionless, in (0, 1])
    step_max: float = 1.0  # largest time step (yr)
    # fastest plausible ice (m yr-1): a step shorter than cfl*dx/speed_max stops the run
    speed_max: float = 50000.0

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ConfigError(f"{KEY}.end ({self.end}) must be after {KEY}.start ({self.start})")
        if not 0 < self.cfl <= 1:
            raise ConfigError(f"{KEY}.cfl must be in (0, 1] (the explicit transport is unstable "
                              f"above 1), got {self.cfl}")
        for key in ("save", "step_max", "speed_max"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{KEY}.{key} must be positive, got {getattr(self, key)}")


def max_face_diffusivity(state) -> float:
    """Largest effective diffusivity ``|u_f| H_f / |ds/dn|`` (m2/yr) over the
    interior cell faces, from the face velocities ``ubar_xface`` (ny, nx+1)
    and ``vbar_yface`` (ny+1, nx) in m/yr, the mean thickness of the two
    cells (m) and the surface difference across the face; 0 without face
    velocities or ice."""
    if not (state.has("ubar_xface") and state.has("vbar_yface")):
        return 0.0
    f64 = "float64"
    H, s = np.asarray(state.thk, f64), np.asarray(state.usurf, f64)
    d_max = 0.0
    for u, axis in ((np.asarray(state.ubar_xface, f64)[:, 1:-1], 1),
                    (np.asarray(state.vbar_yface, f64)[1:-1], 0)):
        slope = np.abs(np.diff(s, axis=axis)) / state.dx
        flux = np.abs(u) * 0.5 * (np.delete(H, 0, axis) + np.delete(H, -1, axis))
        d = np.divide(flux, slope, out=np.zeros_like(flux), where=slope > 0)
        d_max = max(d_max, float(d.max(initial=0.0)))
    return d_max


def next_save_time(params: Params, t: float) -> float:
    """The first save time strictly after ``t`` (yr), capped at ``end``."""
    k = math.floor((t - params.start) / params.save + 1e-9) + 1
    return min(params.start + k * params.save, params.end)


def fastest(state) -> tuple[float, float, float]:
    """Largest depth-averaged speed component (m/yr) and where (x, y in m)."""
    best = (0.0, math.nan, math.nan)
    for name in VELOCITY_FIELDS:
        if state.has(name):
            values = np.abs(np.asarray(state.get(name)))
            j, i = np.unravel_index(int(np.argmax(values)), values.shape)
            if values[j, i] > best[0]:
                best = (float(values[j, i]), float(state.x[i]), float(state.y[j]))
    return best


def runaway(params: Params, state, speed: float, x: float, y: float) -> PluginRuntimeError:
    """The one-line error of a CFL step below the floor ``cfl dx / speed_max``
    (ice faster than ``speed_max``): ``speed`` (m/yr) at ``x``, ``y`` (m)."""
    return PluginRuntimeError(
        f"{KEY}: the time step fell to {params.cfl * state.dx / speed:.3g} yr at "
        f"t={float(state.t):.6g} yr (step {state.it}), below the floor cfl*dx/speed_max = "
        f"{params.cfl * state.dx / params.speed_max:.3g} yr: the depth-averaged ice speed "
        f"reaches {speed / 1000:.3g} km/yr at x={x:.6g} m, y={y:.6g} m; the ice flow has blown "
        "up (likely causes: a time step too long for the flow earlier, a diverging flow solver, "
        "or input fields in the wrong units)")


@hookimpl
def igm_process_initialize(params: Params, state) -> None:
    state.t = float(params.start)
    state.t_end = float(params.end)
    state.dt = 0.0
    state.saveresult = True


@hookimpl
def igm_process_update(params: Params, state) -> None:
    if state.it == 0:
        state.dt = 0.0
        state.saveresult = True
        return
    speed, x, y = fastest(state)
    if speed > params.speed_max:
        raise runaway(params, state, speed, x, y)
    dt = params.step_max
    if speed > 0:
        dt = min(dt, params.cfl * state.dx / speed)
    diffusivity = max_face_diffusivity(state)
    if diffusivity > 0:
        dt = min(dt, params.cfl * state.dx**2 / (4.0 * diffusivity))
    target = next_save_time(params, state.t)
    if state.t + dt >= target - 1e-9 * max(1.0, abs(target)):
        state.dt = target - state.t
        state.t = target
        state.saveresult = True
    else:
        state.dt = dt
        state.t = state.t + dt
        state.saveresult = False

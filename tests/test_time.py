"""The ``time`` process: CFL step, step_max, exact landing on save times."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from igm_core.errors import ConfigError, PluginRuntimeError
from igm_core.testing import load_plugin, make_state, run_context
from igm_plugins.processes import time as clock


def advance(params: clock.Params, state, tmp_path) -> list[tuple[float, float, bool]]:
    """Run the clock to the end as the engine does; (t, dt, saveresult) per step."""
    plugins, plugin = load_plugin(clock, "processes", params)
    plugins.call(plugin, "igm_process_initialize", state=state, run=run_context(tmp_path))
    steps = []
    while state.t < state.t_end:
        plugins.call(plugin, "igm_process_update", state=state, memory=None)
        steps.append((state.t, state.dt, state.saveresult))
        state.it += 1
    return steps


def test_step_zero_keeps_the_start_time(tmp_path):
    steps = advance(clock.Params(start=10.0, end=11.0, save=0.5), make_state(), tmp_path)
    assert steps[0] == (10.0, 0.0, True)


def test_lands_exactly_on_every_save_time_and_the_end(tmp_path):
    params = clock.Params(start=0.0, end=3.5, save=1.0, step_max=0.3)
    steps = advance(params, make_state(), tmp_path)
    saved = [t for t, _, save in steps if save]
    assert saved == [0.0, 1.0, 2.0, 3.0, 3.5]  # exact floats, no drift
    assert all(0 < dt <= 0.3 + 1e-12 for _, dt, _ in steps[1:])
    assert steps[-1][0] == 3.5
    times = [t for t, _, _ in steps]
    assert all(b > a for a, b in itertools.pairwise(times[1:]))


@pytest.mark.parametrize(("fields", "expected_dt"), [
    ({"ubar": 100.0, "vbar": -50.0}, 0.3 * 100.0 / 100.0),
    ({"ubar": 100.0, "vbar": 0.0, "U": np.full((3, 16, 20), -300.0)}, 0.3 * 100.0 / 100.0),
    ({}, 1.0),
])
def test_step_obeys_cfl_on_the_largest_depth_averaged_velocity(tmp_path, fields, expected_dt):
    """The CFL limit is that of the thickness transport (ubar, vbar); faster
    3-D velocities (U at the surface) do not shorten the step."""
    state = make_state(dx=100.0, **fields)
    steps = advance(clock.Params(start=0.0, end=0.95, save=10.0, step_max=1.0, cfl=0.3),
                    state, tmp_path)
    assert steps[1][1] == pytest.approx(min(expected_dt, 0.95))
    assert steps[-1][0] == 0.95


def test_face_velocities_add_the_diffusive_limit(tmp_path):
    """With staggered face velocities (iceflow sia, numerics.staggered) the
    step also obeys dt <= cfl dx^2 / (4 D), D = |u| H / |ds/dx| on the faces:
    here 50 m/yr x 200 m / 0.1 = 1e5 m2/yr, so dt = 0.3 x 1e4 / 4e5 yr
    (the advective limit is 0.6 yr; no slope along y, no limit there)."""
    nx, ny, dx = 20, 16, 100.0
    topg = np.tile(0.1 * dx * np.arange(nx), (ny, 1))
    state = make_state(nx=nx, ny=ny, dx=dx, thk=200.0, topg=topg, ubar=50.0, vbar=0.0,
                       ubar_xface=np.full((ny, nx + 1), 50.0),
                       vbar_yface=np.full((ny + 1, nx), 7.0))
    assert clock.max_face_diffusivity(state) == pytest.approx(1e5, rel=1e-5)
    steps = advance(clock.Params(start=0.0, end=0.95, save=10.0, step_max=1.0, cfl=0.3),
                    state, tmp_path)
    assert steps[1][1] == pytest.approx(0.3 * dx**2 / 4e5, rel=1e-5)


def test_cfl_step_never_exceeds_step_max(tmp_path):
    steps = advance(clock.Params(start=0.0, end=2.0, save=1.0, step_max=0.25),
                    make_state(ubar=1.0), tmp_path)
    assert max(dt for _, dt, _ in steps) == pytest.approx(0.25)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": 5.0, "end": 5.0}, r"processes.time.end \(5.0\) must be after processes.time.start"),
    ({"save": 0.0}, "processes.time.save must be positive"),
    ({"cfl": -1.0}, r"processes.time.cfl must be in \(0, 1\] \(the explicit transport is "
                    r"unstable above 1\), got -1.0"),
    ({"cfl": 20.0}, r"processes.time.cfl must be in \(0, 1\].*got 20.0"),
    ({"speed_max": 0.0}, "processes.time.speed_max must be positive"),
])
def test_bad_parameters_are_refused_when_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        clock.Params(**kwargs)


def test_a_runaway_flow_stops_with_one_line_naming_speed_and_place(tmp_path):
    ubar = np.zeros((16, 20), "float32")
    ubar[3, 7] = -80000.0  # 80 km/yr: faster than any glacier
    with pytest.raises(PluginRuntimeError) as info:
        advance(clock.Params(start=0.0, end=2.0, save=1.0), make_state(ubar=ubar), tmp_path)
    message = str(info.value)
    assert message.startswith("processes.time: the time step fell to 0.000375 yr at t=0 yr "
                              "(step 1), below the floor cfl*dx/speed_max = 0.0006 yr")
    assert "speed reaches 80 km/yr at x=700 m, y=300 m; the ice flow has blown up" in message


def test_next_save_time_caps_at_the_end():
    params = clock.Params(start=1900.0, end=1925.0, save=10.0)
    assert clock.next_save_time(params, 1900.0) == 1910.0
    assert clock.next_save_time(params, 1910.0) == 1920.0
    assert clock.next_save_time(params, 1921.3) == 1925.0
    assert math.isclose(clock.next_save_time(params, 1909.999999), 1910.0)

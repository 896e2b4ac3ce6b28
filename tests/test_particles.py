"""particles: exact motion in a uniform flow, burial under a known vertical
velocity, removal at the domain edge and the ice margin, seeding area,
density and frequency."""

from __future__ import annotations

import numpy as np
import pytest

from igm_core.errors import ConfigError
from igm_core.testing import PluginRun, check_checkpoint_round_trip, make_state
from igm_plugins.processes import particles

NX, NY, DX, NZ = 30, 20, 100.0, 4


def flow_state(u=0.0, v=0.0, w=0.0, thk=200.0, smb=1.0):
    ones = np.ones((NZ, NY, NX))
    state = make_state(nx=NX, ny=NY, dx=DX, topg=1500.0, thk=thk, smb=smb, U=u * ones,
                       V=v * ones, W=w * ones)
    state.zeta = np.linspace(0.0, 1.0, NZ).astype("float32")
    return state


def seeded(state, params, tmp_path) -> PluginRun:
    """The process initialised and updated once at t = 0 (the first seeding)."""
    run = PluginRun(particles, "processes", state, params, tmp_path).start()
    run.step(0.0)
    return run


def advance(run: PluginRun, steps: int, dt: float) -> None:
    """Update the process ``steps`` times (the clock as the time process sets it)."""
    for _ in range(steps):
        run.step(dt)


def as_numpy(state) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in state.particles.items()}


def test_a_particle_in_a_uniform_flow_moves_exactly_u_t(tmp_path):
    state = flow_state(u=30.0, v=-10.0)
    params = particles.Params(density_seeding=1.0)
    run = seeded(state, params, tmp_path)
    start = as_numpy(state)
    assert start["x"].size == NX * NY  # one per cell
    run.memory.next_seeding = np.inf  # no more seeding
    advance(run, 10, 0.5)
    end = as_numpy(state)
    assert 0 < end["x"].size < start["x"].size  # some crossed the east or south edge
    kept = np.searchsorted(start["id"], end["id"])
    np.testing.assert_allclose(end["x"] - start["x"][kept], 150.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(end["y"] - start["y"][kept], -50.0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(end["rh"], 1.0)  # no vertical motion
    np.testing.assert_allclose(end["z"], 1700.0, rtol=1e-12)
    half = DX / 2
    assert np.all(end["x"] <= state.x[-1] + half) and np.all(end["y"] >= state.y[0] - half)
    assert set(end) == set(particles.VARIABLES)
    assert {v.shape for v in end.values()} == {end["x"].shape}


def test_burial_under_a_uniform_downward_velocity(tmp_path):
    state = flow_state(w=-4.0, thk=200.0)
    params = particles.Params(frequency_seeding=1e6)
    run = seeded(state, params, tmp_path)
    advance(run, 10, 1.0)
    p = as_numpy(state)
    assert p["x"].size > 0
    np.testing.assert_allclose(p["rh"], 1.0 - 4.0 * 10 / 200.0, rtol=1e-12)
    np.testing.assert_allclose(p["z"], 1500.0 + 200.0 * 0.8, rtol=1e-12)
    np.testing.assert_allclose(p["englt"], 10.0)  # below the surface all along
    np.testing.assert_array_equal(p["t_seed"], 0.0)


def test_particles_leave_with_the_ice_and_are_seeded_only_where_it_accumulates(tmp_path):
    xx = np.arange(NX)[None, :] + np.zeros((NY, 1))
    thk = np.where(xx < 20, 100.0, 0.0)  # ice margin at x = 1950 m
    smb = np.where(xx < 10, 1.0, -1.0)  # accumulation west of x = 950 m
    state = flow_state(u=100.0, thk=thk, smb=smb)
    params = particles.Params(density_seeding=3.0, frequency_seeding=1e6)
    run = seeded(state, params, tmp_path)
    p = as_numpy(state)
    assert p["x"].size == 3 * 10 * NY
    assert p["x"].max() < 950.0
    advance(run, 12, 1.0)
    p = as_numpy(state)
    assert 0 < p["x"].size < 3 * 10 * NY
    # the bilinear thickness falls below thk_min = 1 m at x = 1999 m: removed beyond
    assert 1900.0 < p["x"].max() <= 1999.0 + 1e-9


def test_seeding_density_and_frequency(tmp_path):
    state = flow_state()
    params = particles.Params(density_seeding=0.2, frequency_seeding=50.0, seed=7)
    run = seeded(state, params, tmp_path)
    advance(run, 12, 10.0)  # t = 120
    p = as_numpy(state)
    assert sorted(set(p["t_seed"].tolist())) == [0.0, 50.0, 100.0]
    per_seeding = np.bincount((p["t_seed"] / 50).astype(int))
    expected = 0.2 * NX * NY  # 120 per seeding, binomial sd about 10
    assert np.all(np.abs(per_seeding - expected) < 40)
    np.testing.assert_array_equal(np.sort(p["id"]), np.arange(p["id"].size))


def test_bad_parameters():
    with pytest.raises(ConfigError, match=r"processes\.particles\.density_seeding must be pos"):
        particles.Params(density_seeding=0.0)


def test_a_continued_run_moves_and_seeds_exactly_as_one_piece(tmp_path):
    """Random seeding positions, ids and the thickness of the previous step
    are the process's memory: a checkpoint carries them."""
    params = particles.Params(density_seeding=0.5, frequency_seeding=2.0, seed=3)
    check_checkpoint_round_trip(particles, "processes", lambda: flow_state(u=20.0, w=-1.0),
                                tmp_path, params, before=3, after=4, dt=1.0)

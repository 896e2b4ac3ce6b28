"""The progress of the time loop: simulated years, the first (compiling)
step announced, an ETA from the recent pace, log lines above the bar."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from igm_core import observers
from igm_core.config import CoreParams
from igm_core.observers import Progress


class Clock:
    """A fake wall clock: the first step takes 10 s (compilation), every
    later one 0.1 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_loop(progress: Progress, clock: Clock, t0=1900.0, t_end=2000.0, dt=1.0) -> None:
    state = SimpleNamespace(t=t0, t_end=t_end, it=0, ice_volume=lambda: 0.5)
    progress.igm_run_begin(state=state)
    while state.t < t_end:
        clock.now += 10.0 if state.it == 0 else 0.1
        state.t += dt
        state.it += 1
        progress.igm_step_end(state=state)
    progress.igm_run_end()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(observers.time, "perf_counter", fake)
    return fake


def test_log_lines_count_simulated_years_with_an_eta_from_the_recent_pace(clock, caplog):
    caplog.set_level(logging.INFO, logger="igm")
    run_loop(Progress("log"), clock)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("t=1900 yr: first step (traces and compiles")
    assert lines[1].startswith("t=1910.00 yr (step 10, 10 %): ice volume 0.5000 km3, "
                               "0.100 s per simulated yr, ETA 9 s")
    assert lines[-1].startswith("t=2000.00 yr (step 100, 100 %)")


def test_the_bar_shows_years_and_log_lines_go_above_it(clock, capsys):
    progress = Progress("bar")
    state = SimpleNamespace(t=1900.0, t_end=2000.0, it=0, ice_volume=lambda: 0.5)
    progress.igm_run_begin(state=state)
    root = logging.getLogger()
    # while the bar is drawn, console handlers write through tqdm.write
    assert any(type(h).__name__ == "_TqdmLoggingHandler" for h in root.handlers)
    for _ in range(50):
        clock.now += 0.1
        state.t += 1.0
        state.it += 1
        progress.igm_step_end(state=state)
    progress._bar.refresh()
    err = capsys.readouterr().err
    assert "first step: compiling" in err
    assert "1950.0/2000 yr  50%" in err and "ETA 5 s" in err
    progress.igm_run_end()
    assert not any(type(h).__name__ == "_TqdmLoggingHandler" for h in root.handlers)


def test_the_parameter_dump_is_off_by_default():
    assert CoreParams().print_params is False

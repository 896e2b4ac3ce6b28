"""Cross-cutting observers: per-plugin timing (hook wrappers) and progress.

They are registered next to the selected plugins and never change physics.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from igm_core import hookspecs
from igm_core.plugins import hookimpl

log = logging.getLogger("igm")
BAR_FORMAT = "{l_bar}{bar}| {n:.1f}/{total:.1f} yr [{elapsed}<{remaining}{postfix}]"


def _timing_wrapper(hook: str) -> Callable[..., Any]:
    def wrapper(self: Timer, params: Any) -> Any:
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            self.record(params, hook, time.perf_counter() - start)

    wrapper.__name__ = hook
    return hookimpl(wrapper=True)(wrapper)


class Timer:
    """Wall time spent in each plugin's hooks (s), built as pluggy hook
    wrappers around every stage hook. ``names`` maps ``id(params)`` of each
    selected plugin to its label."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    def record(self, params: Any, hook: str, seconds: float) -> None:
        """Add one call of ``hook`` that took ``seconds``."""
        key = (self.names.get(id(params), type(params).__module__), hook.split("_")[-1])
        self.totals[key][0] += 1
        self.totals[key][1] += seconds

    def rows(self) -> list[dict[str, Any]]:
        """One row per plugin and hook phase, slowest first."""
        rows = [{"plugin": p, "hook": h, "calls": n, "total_s": s, "per_call_s": s / n}
                for (p, h), (n, s) in self.totals.items()]
        return sorted(rows, key=lambda r: -r["total_s"])

    def table(self) -> str:
        """The timing table printed with ``core.print_comp``."""
        return format_timings(self.rows())


def format_timings(rows: list[dict[str, Any]]) -> str:
    """A text table of per-plugin timings (rows from :meth:`Timer.rows`)."""
    grand = sum(r["total_s"] for r in rows) or 1.0
    out = [f"{'plugin':<24} {'hook':<10} {'calls':>7} {'total s':>10} {'ms/call':>10} {'%':>6}"]
    for r in rows:
        out.append(f"{r['plugin']:<24} {r['hook']:<10} {r['calls']:>7d} "
                   f"{r['total_s']:>10.3f} {1e3 * r['per_call_s']:>10.3f} "
                   f"{100 * r['total_s'] / grand:>6.1f}")
    return "\n".join(out)


for _hook in (h for hooks in hookspecs.STAGE_HOOKS.values() for h in hooks):
    setattr(Timer, _hook, _timing_wrapper(_hook))


class Progress:
    """Progress of the time loop: simulated time, step, ice volume, wall time
    per simulated year and ETA.

    ``mode`` is ``bar`` (a tqdm bar on a terminal), ``log`` (a log line
    every ``log_every`` of the simulated span) or ``off``; ``auto`` picks
    ``bar`` on an interactive terminal outside a multirun, else ``log``.
    """

    def __init__(self, mode: str = "auto", multirun: bool = False, log_every: float = 0.1) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() and not multirun else "log"
        self.mode = mode
        self.log_every = log_every
        self._bar: Any = None
        self._start = 0.0
        self._t0 = 0.0
        self._next_log = 0.0

    @hookimpl
    def igm_run_begin(self, state: Any) -> None:
        self._start = time.perf_counter()
        self._t0 = float(state.t)
        span = float(state.t_end) - self._t0
        self._next_log = self._t0 + self.log_every * span
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=span, unit="yr", dynamic_ncols=True, file=sys.stderr,
                             bar_format=BAR_FORMAT)

    def _figures(self, state: Any) -> tuple[float, float, float]:
        elapsed = time.perf_counter() - self._start
        done = float(state.t) - self._t0
        per_year = elapsed / done if done > 0 else math.nan
        eta = per_year * (float(state.t_end) - float(state.t)) if done > 0 else math.nan
        return per_year, eta, state.ice_volume()

    @hookimpl
    def igm_step_end(self, state: Any) -> None:
        if self.mode == "off":
            return
        per_year, eta, volume = self._figures(state)
        if self._bar is not None:
            self._bar.set_postfix_str(f"step {state.it}, V={volume:.4f} km3, {per_year:.3f} s/yr",
                                      refresh=False)
            self._bar.update(float(state.t) - self._t0 - self._bar.n)
        elif float(state.t) >= self._next_log or float(state.t) >= float(state.t_end):
            span = float(state.t_end) - self._t0
            while self._next_log <= float(state.t):
                self._next_log += self.log_every * span if span > 0 else math.inf
            log.info("t=%.2f yr (step %d): ice volume %.4f km3, %.3f s per simulated yr, "
                     "ETA %.0f s", float(state.t), state.it, volume, per_year, eta)

    @hookimpl
    def igm_run_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

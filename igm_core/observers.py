"""Cross-cutting observers: per-plugin timing (hook wrappers) and progress.

They are registered next to the selected plugins and never change physics.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from igm_core import hookspecs
from igm_core.plugins import hookimpl

log = logging.getLogger("igm")
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"


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
    """Progress of the time loop, in simulated years (``1900.0/2000 yr``):
    step, ice volume, wall time per simulated year and an ETA from the
    loop's recent pace (the last ``window`` of the span, so the first step's
    compilation does not inflate it).

    ``mode`` is ``bar`` (a tqdm bar on a terminal; log lines are written
    above it, not through it), ``log`` (a log line every ``log_every`` of
    the simulated span) or ``off``; ``auto`` picks ``bar`` on an interactive
    terminal outside a multirun, else ``log``. The first step, which traces
    and compiles the TensorFlow functions, is announced.
    """

    def __init__(self, mode: str = "auto", multirun: bool = False, log_every: float = 0.1,
                 window: float = 0.1) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() and not multirun else "log"
        self.mode = mode
        self.log_every = log_every
        self.window = window
        self._bar: Any = None
        self._redirect: Any = None
        self._t0 = 0.0
        self._t_end = 0.0
        self._next_log = 0.0
        self._samples: deque[tuple[float, float]] = deque()  # (wall s, simulated yr)

    @hookimpl
    def igm_run_begin(self, state: Any) -> None:
        self._t0 = float(state.t)
        self._t_end = float(state.t_end)
        span = self._t_end - self._t0
        self._next_log = self._t0 + self.log_every * span
        self._samples = deque([(time.perf_counter(), self._t0)])
        if self.mode == "off":
            return
        if self.mode == "bar":
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
            self._bar = tqdm(total=span, dynamic_ncols=True, file=sys.stderr,
                             bar_format=BAR_FORMAT, desc=self._years(self._t0))
            self._bar.set_postfix_str("first step: compiling", refresh=True)
        log.info("t=%g yr: first step (traces and compiles the TensorFlow functions; the "
                 "later steps are faster)", self._t0)

    def _years(self, t: float) -> str:
        return f"{t:.1f}/{self._t_end:g} yr"

    def _pace(self, state: Any) -> tuple[float, float]:
        """Wall seconds per simulated year over the recent window, and the
        ETA (s) at that pace; nan before the second step."""
        now, t = time.perf_counter(), float(state.t)
        self._samples.append((now, t))
        if len(self._samples) > 2 and self._samples[0][1] == self._t0:
            self._samples.popleft()  # the first step (compilation) leaves the window
        horizon = self.window * (self._t_end - self._t0)
        while len(self._samples) > 2 and t - self._samples[1][1] >= horizon:
            self._samples.popleft()
        wall0, t_old = self._samples[0]
        done = t - t_old
        per_year = (now - wall0) / done if done > 0 else math.nan
        return per_year, per_year * (self._t_end - t)

    @hookimpl
    def igm_step_end(self, state: Any) -> None:
        if self.mode == "off":
            return
        per_year, eta = self._pace(state)
        t = float(state.t)
        if self._bar is not None:
            self._bar.set_description_str(self._years(t), refresh=False)
            self._bar.set_postfix_str(f"step {state.it}, V={state.ice_volume():.4f} km3, "
                                      f"{per_year:.3f} s/yr, ETA {_duration(eta)}", refresh=False)
            self._bar.update(t - self._t0 - self._bar.n)
        elif t >= self._next_log or t >= self._t_end:
            span = self._t_end - self._t0
            while self._next_log <= t:
                self._next_log += self.log_every * span if span > 0 else math.inf
            log.info("t=%.2f yr (step %d, %.0f %%): ice volume %.4f km3, %.3f s per simulated "
                     "yr, ETA %s", t, state.it, 100 * (t - self._t0) / span if span else 100,
                     state.ice_volume(), per_year, _duration(eta))

    @hookimpl
    def igm_run_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


def _duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``12 s``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"

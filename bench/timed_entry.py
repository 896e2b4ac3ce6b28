"""Run a model's ``igm_run`` in this interpreter and time its loop.

Usage: ``python timed_entry.py {ours,igm} STAMPS.json [igm_run arguments...]``

Run with the Python of the model's own virtual environment. It calls the
model's console-script function exactly as ``igm_run`` would, with one
addition: it notes the wall-clock time (seconds since the epoch) when the
time loop begins, when the first step (step 0, the initial state) ends and
when the loop ends, counts the steps, and writes them to ``STAMPS.json`` on
exit, next to ``driver_start`` (when this script started).

- ours: an observer passed to ``igm_core.engine.run`` (its public
  ``observers`` argument) implements ``igm_run_begin``, ``igm_step_end`` and
  ``igm_run_end``.
- igm (IGM 3.2.1): wraps ``igm.common.update_modules`` (the time loop) and
  ``run_outputs`` (called once at the end of every step) before
  ``igm.igm_run`` binds them.

Standard library only: the two models live in different environments.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAMPS: dict[str, Any] = {"driver_start": time.time(), "loop_begin": None,
                          "first_step_end": None, "loop_end": None, "steps": 0}


def _step_done() -> None:
    if STAMPS["first_step_end"] is None:
        STAMPS["first_step_end"] = time.time()
    STAMPS["steps"] += 1


def _ours() -> Callable[[], Any]:
    from igm_core import engine, hookimpl

    class LoopStamps:
        @hookimpl
        def igm_run_begin(self) -> None:
            STAMPS.update(loop_begin=time.time(), first_step_end=None, steps=0)

        @hookimpl
        def igm_step_end(self) -> None:
            _step_done()

        @hookimpl
        def igm_run_end(self) -> None:
            STAMPS["loop_end"] = time.time()

    run = engine.run

    def run_with_stamps(*args: Any, observers: Any = (), **kwargs: Any) -> Any:
        return run(*args, observers=(*observers, LoopStamps()), **kwargs)

    engine.run = run_with_stamps
    from igm_core.app import console

    return console


def _igm() -> Callable[[], Any]:
    import igm.common as common
    from igm.common.runner.modules import src

    update_modules, run_outputs = common.update_modules, src.run_outputs

    def timed_update_modules(*args: Any, **kwargs: Any) -> Any:
        STAMPS.update(loop_begin=time.time(), first_step_end=None, steps=0)
        try:
            return update_modules(*args, **kwargs)
        finally:
            STAMPS["loop_end"] = time.time()

    def counted_run_outputs(*args: Any, **kwargs: Any) -> Any:
        result = run_outputs(*args, **kwargs)
        _step_done()
        return result

    common.update_modules = timed_update_modules
    src.run_outputs = counted_run_outputs
    from igm.igm_run import main

    return main


def entry(model: str, stamps: Path, args: list[str]) -> None:
    """Instrument ``model`` ('ours' or 'igm'), run its ``igm_run`` with
    ``args`` and write the stamps to ``stamps`` whatever happens."""
    sys.argv = ["igm_run", *args]
    try:
        main = {"ours": _ours, "igm": _igm}[model]()
        main()
    finally:
        stamps.write_text(json.dumps(STAMPS))


if __name__ == "__main__":
    entry(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])

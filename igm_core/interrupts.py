"""Signals a running simulation answers, as batch systems send them.

- ``SIGTERM`` (a SLURM time limit, preemption, ``scancel`` or ``kill``):
  finish the current step, write a checkpoint, stop as *interrupted*.
- ``SIGUSR2`` (submitit's warning before a SLURM time limit,
  ``--signal=USR2@N``): the same, then hand the signal to the handler that
  was there before (submitit's, which requeues the job).
- ``SIGUSR1`` (``--signal=USR1@N``, or ``kill -USR1``): write a checkpoint
  after the current step and go on.

A SIGTERM that arrives before the time loop starts (while TensorFlow loads
or the input is read) stops the run at once: there is nothing to save yet,
and the batch system kills a job that waits (SLURM's KillWait). SIGUSR2
comes ``signal_delay_s`` before a time limit: the run still makes its first
step and checkpoints it, so that every attempt of a requeued job advances.
``SIGINT`` (Ctrl-C) keeps Python's behaviour (KeyboardInterrupt) but is
recorded, so that a KeyboardInterrupt a plugin raises itself is told from a
real Ctrl-C. Handlers can only be set from the main thread; elsewhere the
run goes on without them. No TensorFlow here.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from igm_core.errors import RunInterrupted

STOP = (signal.SIGTERM, signal.SIGUSR2)
CHECKPOINT = (signal.SIGUSR1,)


class Interrupts:
    """Context manager: records the signals received while it is active and
    restores the previous handlers on exit."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: dict[int, Any] = {}
        self.looping = False  # set by the engine when the time loop starts
        self.watching_sigint = False  # whether a Ctrl-C would be recorded
        self.sigint_received = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (*STOP, *CHECKPOINT):
                self.previous[signum] = signal.signal(signum, self._record)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._ctrl_c)
                self.watching_sigint = True
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if signum == signal.SIGTERM and not self.looping:
            raise RunInterrupted(f"interrupted by {name(signum)} before the first time step",
                                 signum)

    def _ctrl_c(self, signum: int, frame: FrameType | None) -> None:
        self.sigint_received = True
        signal.default_int_handler(signum, frame)

    def raised_without_sigint(self) -> bool:
        """Whether a KeyboardInterrupt seen now was raised by code, not by
        a Ctrl-C (only known while SIGINT is watched)."""
        return self.watching_sigint and not self.sigint_received

    @property
    def checkpoint_requested(self) -> bool:
        """Whether a signal asked for a checkpoint since the last :meth:`clear`."""
        return bool(self.received)

    @property
    def stop_signal(self) -> int | None:
        """The first stopping signal received, or None."""
        return next((s for s in self.received if s in STOP), None)

    def clear(self) -> None:
        """Forget the checkpoint requests (after writing one); a stop stays."""
        self.received = [s for s in self.received if s in STOP][:1]


def name(signum: int) -> str:
    """``SIGTERM`` style name of a signal number."""
    return signal.Signals(signum).name


def forward(signum: int) -> None:
    """Call this process's handler for ``signum`` (after :class:`Interrupts`
    restored it: submitit's requeue on SIGUSR2), if it is a Python function."""
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)

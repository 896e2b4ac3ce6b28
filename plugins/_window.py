"""The part of the grid a process needs: the bounding box of the ice, grown
by a margin. Ice-free nodes carry no flow, so the ice flow (its energy,
solver and emulator) and the vertical velocity work on that window and pad
their result with zeros: their cost follows the glacier, not the domain."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # plugins import TensorFlow only once the parameters are checked
    import tensorflow as tf


def ice_window(ice: np.ndarray, margin: int, bucket: int = 16,
               current: tuple[slice, slice] | None = None) -> tuple[slice, slice] | None:
    """The rows and columns the ice flow must see to get every ice node
    right: the bounding box of ``ice`` (ny, nx, bool) grown by ``margin``
    cells and rounded up to a multiple of ``bucket`` cells; None without ice.

    With a ``current`` window the shape never shrinks: a window that still
    holds the box is kept, one that does not is moved (the box centred in
    it) and grown only where the box is larger. So the compiled functions
    that take the window keep their shapes as a glacier retreats or shifts.
    """
    need = []
    for axis in (1, 0):
        hit = np.flatnonzero(ice.any(axis=axis))
        if hit.size == 0:
            return None
        n = ice.shape[1 - axis]
        need.append((max(hit[0] - margin, 0), min(hit[-1] + 1 + margin, n), n))
    if current is not None and all(w.start <= lo and hi <= w.stop
                                   for w, (lo, hi, _) in zip(current, need, strict=True)):
        return current
    window = []
    for axis, (lo, hi, n) in enumerate(need):
        size = min(n, -(-(hi - lo) // bucket) * bucket)
        start = min(lo, n - size)
        if current is not None:
            size = max(size, current[axis].stop - current[axis].start)
            start = min(max(lo - (size - (hi - lo)) // 2, 0), n - size)
        window.append(slice(int(start), int(start + size)))
    return window[0], window[1]


class IceWindow:
    """The window one process (or method) keeps from step to step:
    :func:`ice_window` of ``thk > thr_ice_thk`` (m) with ``margin`` cells,
    starting from the last one; its moves are logged at debug level by the
    logger of ``owner`` (a configuration key such as ``processes.iceflow``)."""

    def __init__(self, margin: int, thr_ice_thk: float, owner: str) -> None:
        self.margin, self.thr_ice_thk = margin, thr_ice_thk
        self.current: tuple[slice, slice] | None = None
        self.log = logging.getLogger(f"igm.{owner}")

    def follow(self, thk: tf.Tensor) -> tuple[slice, slice] | None:
        """The window for the thickness ``thk`` (ny, nx); None without ice."""
        window = ice_window(np.asarray(thk) > self.thr_ice_thk, self.margin,
                            current=self.current)
        if window is not None and window != self.current:
            self.log.debug("window: rows %d-%d, columns %d-%d", window[0].start,
                           window[0].stop, window[1].start, window[1].stop)
        self.current = window
        return window

    def state_dict(self) -> list[int] | None:
        """The current window as [row start, row stop, column start, column
        stop], or None (for checkpoints: the compiled shapes follow it)."""
        if self.current is None:
            return None
        rows, cols = self.current
        return [rows.start, rows.stop, cols.start, cols.stop]

    def load_state_dict(self, saved: list[int] | None) -> None:
        """Restore :meth:`state_dict`."""
        self.current = None if saved is None else (slice(saved[0], saved[1]),
                                                   slice(saved[2], saved[3]))


def crop(args: tuple, window: tuple[slice, slice]) -> tuple:
    """The geometry ``args`` = (thk, usurf, A, C, dx) restricted to ``window``."""
    thk, usurf, A, C, dx = args
    A = A[window] if A.shape.rank == 2 else A[(slice(None), *window)]
    return thk[window], usurf[window], A, C[window], dx


def uncrop(X: tf.Tensor, window: tuple[slice, slice], shape: tuple[int, int]) -> tf.Tensor:
    """A field (..., h, w) on ``window`` padded with zeros to the grid ``shape``."""
    import tensorflow as tf

    (r, c), (ny, nx) = window, shape
    pad = [[0, 0]] * (X.shape.rank - 2) + [[r.start, ny - r.stop], [c.start, nx - c.stop]]
    return tf.pad(X, pad)


def window_bounds(window: tuple[slice, slice]) -> tuple[tf.Tensor, tf.Tensor]:
    """The window's rows and columns as (start, stop) int32 tensors: passed
    to a compiled function instead of slices, one trace serves every window
    (see :func:`pad_to_grid`)."""
    import tensorflow as tf

    rows, cols = window
    return tf.constant([rows.start, rows.stop]), tf.constant([cols.start, cols.stop])


def pad_to_grid(X: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, grid: tf.Tensor) -> tf.Tensor:
    """In a compiled function: a field (..., h, w) on the window of
    :func:`window_bounds` padded with zeros to the (ny, nx) of ``grid``."""
    import tensorflow as tf

    ny, nx = tf.shape(grid)[-2], tf.shape(grid)[-1]
    pad = [[0, 0]] * (X.shape.rank - 2) + [[rows[0], ny - rows[1]], [cols[0], nx - cols[1]]]
    return tf.pad(X, pad)

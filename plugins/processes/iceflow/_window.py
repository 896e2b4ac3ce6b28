"""The part of the grid the ice flow needs: the bounding box of the ice,
grown by a margin. Ice-free nodes carry no flow, so the energy, the solver
and the emulator can work on that window and pad their result with zeros."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def ice_window(ice: np.ndarray, margin: int, bucket: int = 16) -> tuple[slice, slice] | None:
    """The rows and columns the network must see to get every ice node
    right: the bounding box of ``ice`` (ny, nx, bool) grown by ``margin``
    cells (the network's reach) and rounded up to a multiple of ``bucket``
    cells (few distinct shapes, so few compilations); None without ice."""
    window = []
    for axis in (1, 0):
        hit = np.flatnonzero(ice.any(axis=axis))
        if hit.size == 0:
            return None
        n = ice.shape[1 - axis]
        size = min(n, -(-(hit[-1] + 1 - hit[0] + 2 * margin) // bucket) * bucket)
        start = min(max(hit[0] - margin, 0), n - size)
        window.append(slice(int(start), int(start + size)))
    return window[0], window[1]


def crop(args: tuple, window: tuple[slice, slice]) -> tuple:
    """The geometry ``args`` = (thk, usurf, A, C, dx) restricted to ``window``."""
    thk, usurf, A, C, dx = args
    A = A[window] if A.shape.rank == 2 else A[(slice(None), *window)]
    return thk[window], usurf[window], A, C[window], dx


def uncrop(X: tf.Tensor, window: tuple[slice, slice], shape: tuple[int, int]) -> tf.Tensor:
    """A field (..., h, w) on ``window`` padded with zeros to the grid ``shape``."""
    (r, c), (ny, nx) = window, shape
    pad = [[0, 0]] * (X.shape.rank - 2) + [[r.start, ny - r.stop], [c.start, nx - c.stop]]
    return tf.pad(X, pad)

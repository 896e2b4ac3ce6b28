"""Process ``smb_simple``: a surface mass balance from the ELA and two
vertical gradients.

With ``z`` the ice surface elevation ``usurf`` (m) and the parameters of
the current time (linear interpolation in a table, held constant before the
first and after the last row)::

    smb = gradabl * (z - ela)                  where z < ela  (ablation)
    smb = min(gradacc * (z - ela), accmax)     where z >= ela (accumulation)

in m ice equivalent per year; with ``mask_accumulation`` (default) and an
``icemask`` in the State, only ablation applies where ``icemask`` is 0. The
table is ``array`` (a header row naming
the columns ``time, gradabl, gradacc, ela, accmax`` in any order, then rows
of numbers, as in the IGM documentation) or a text ``file`` of the same
table (whitespace or comma separated; the file wins when both are given).
The field is recomputed every ``update_freq`` years, and at the first
update (the clock is set by ``time``, which may come later in the list).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igm_core import hookimpl
from igm_core.errors import ConfigError, DataError

KEY = "processes.smb_simple"
COLUMNS = ("time", "gradabl", "gradacc", "ela", "accmax")


def _default_array() -> list[Any]:
    return [list(COLUMNS), [1900, 0.009, 0.005, 2800, 2.0], [2000, 0.009, 0.005, 2900, 2.0]]


@dataclass
class Params:
    # Header row, then rows: time (yr), gradabl (m/yr per m, ice eq.),
    # gradacc (m/yr per m), ela (m a.s.l.), accmax (m/yr, ice eq.)
    array: list[Any] = field(default_factory=_default_array)
    file: str = ""  # text table with the same header; overrides `array` when set
    update_freq: float = 1.0  # years between recomputations of smb
    # no accumulation where the input's icemask is 0 (smb = min(smb, 0) there),
    # so that bare peaks above the ELA do not grow new glaciers
    mask_accumulation: bool = True

    def __post_init__(self) -> None:
        if not self.update_freq >= 0:
            raise ConfigError(f"{KEY}.update_freq must be >= 0 years, got {self.update_freq}")
        if not self.file:
            parse_table(list(self.array), f"{KEY}.array")


requires = ("usurf",)
provides = ("smb",)


def parse_table(rows: list[Any], where: str) -> dict[str, np.ndarray]:
    """Columns of a parameter table (header row + numeric rows) as float64
    arrays sorted by strictly increasing ``time``; raise ConfigError naming
    ``where`` otherwise."""
    if len(rows) < 2:
        raise ConfigError(f"{where}: needs a header row ({', '.join(COLUMNS)}) and at least "
                          "one row of values")
    header = [str(h).strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{where}: header {header} lacks column(s) {', '.join(missing)}; "
                          f"expected {', '.join(COLUMNS)}")
    try:
        values = np.array([[float(v) for v in row] for row in rows[1:]], dtype="float64")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: rows must hold numbers only ({exc})") from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise ConfigError(f"{where}: every row needs {len(header)} values, like the header")
    table = {c: values[:, header.index(c)] for c in COLUMNS}
    if np.any(np.diff(table["time"]) <= 0):
        raise ConfigError(f"{where}: times must be strictly increasing, got "
                          f"{table['time'].tolist()}")
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"{where}: values must be finite")
    return table


def read_table_file(path: Path) -> list[list[str]]:
    """Rows of a whitespace- or comma-separated text table (``#`` comments
    and blank lines skipped); DataError naming the file when it cannot be
    read as text."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{KEY}.file: cannot read {path} as a text table "
                        f"({type(exc).__name__}: {exc})") from exc
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append([v for v in re.split(r"[,\s]+", line) if v])
    return rows


def parameters_at(table: dict[str, np.ndarray], t: float) -> dict[str, float]:
    """The table's parameters at time ``t`` (yr), linearly interpolated."""
    return {c: float(np.interp(t, table["time"], table[c])) for c in COLUMNS[1:]}


def mass_balance(usurf: Any, gradabl: float, gradacc: float, ela: float, accmax: float) -> Any:
    """SMB (m ice eq./yr) on the surface elevation ``usurf`` (m), any shape."""
    import tensorflow as tf

    dz = usurf - ela
    return tf.where(dz < 0, gradabl * dz, tf.minimum(gradacc * dz, accmax))


@dataclass
class Climate:
    """What the process keeps between steps: the parameter table (from the
    configuration) and the time (yr) of the last recomputation of smb."""

    table: dict[str, np.ndarray]
    t_last: float | None = None

    def state_dict(self) -> dict[str, Any]:
        """The history a checkpoint keeps (the table comes from the
        configuration, so a continued run may change the climate)."""
        return {"t_last": self.t_last}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.t_last = saved["t_last"]


@hookimpl
def igm_process_initialize(params: Params, state, run) -> Climate:
    import tensorflow as tf

    if params.file:
        path = run.find_file(params.file)
        if path is None:
            raise DataError(f"{KEY}.file: '{params.file}' not found in {run.output_dir}, "
                            f"{run.data_dir} or {run.launch_dir}")
        table = parse_table(read_table_file(path), str(path))
    else:
        table = parse_table(list(params.array), f"{KEY}.array")
    climate = Climate(table)
    if math.isfinite(state.t):
        update(params, state, climate)
    else:  # the clock starts later (time comes after smb_simple): first update computes it
        state.smb = tf.zeros_like(state.usurf)
    return climate


def update(params: Params, state, climate: Climate) -> None:
    """Recompute ``state.smb`` from ``state.usurf`` at ``state.t``."""
    import tensorflow as tf

    p = parameters_at(climate.table, float(state.t))
    smb = mass_balance(state.usurf, **p)
    if params.mask_accumulation and state.has("icemask"):
        smb = tf.where(state.icemask > 0.5, smb, tf.minimum(smb, 0.0))
    state.smb = smb
    climate.t_last = float(state.t)


@hookimpl
def igm_process_update(params: Params, state, memory: Climate) -> None:
    if memory.t_last is None or float(state.t) - memory.t_last >= params.update_freq - 1e-9:
        update(params, state, memory)

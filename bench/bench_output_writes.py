"""Bytes written by ``outputs.local`` for N saves, against the final file.

Drives the output plugin alone (no physics) on the Hintereisferner grid
(50 m, 180 x 220 cells, or coarser with ``--ratio``) with the default
``vars_to_save`` at each of ``--saves`` save times, and counts the bytes
this process hands to ``write()`` (Linux ``/proc/self/io``), the time per
save, and the final sizes of ``output.nc`` and ``output_ts.nc``.

Usage: python bench/bench_output_writes.py [--saves 100] [--ratio 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from igm_core.testing import load_plugin, run_context
from igm_plugins.inputs import local as local_input
from igm_plugins.outputs import local

HEF = Path(__file__).resolve().parents[2] / "shared" / "data" / "hintereisferner" / "input.nc"


def written_bytes() -> int:
    """Bytes this process has handed to write() so far (Linux)."""
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("wchar:")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=100, help="save times (default 100)")
    parser.add_argument("--ratio", type=int, default=1, help="coarsening ratio (1: 50 m)")
    args = parser.parse_args()
    from igm_core.state import State

    state = State()
    with tempfile.TemporaryDirectory(prefix="igm-bench-out-") as tmp:
        folder = Path(tmp)
        plugins, plugin = load_plugin(local_input, "inputs", local_input.Params(
            filename=str(HEF), coarsening=local_input.Coarsening(ratio=args.ratio)))
        plugins.call(plugin, "igm_input_initialize", state=state, run=run_context(folder))
        rng = np.random.default_rng(0)
        shape = state.grid.shape
        for name in local.DEFAULT_VARS:  # fields of realistic entropy (compression is off)
            if name not in state:
                setattr(state, name, rng.normal(10.0, 3.0, shape).astype("float32"))
        registry, output = load_plugin(local, "outputs", local.Params())
        ctx = run_context(folder)
        (memory,) = registry.call(output, "igm_output_initialize", state=state, run=ctx)
        state.saveresult = True
        before, start = written_bytes(), time.perf_counter()
        for k in range(args.saves):
            state.t = 1900.0 + k
            registry.call(output, "igm_output_update", state=state, run=ctx, memory=memory)
        wall = time.perf_counter() - start
        written = written_bytes() - before
        size = (folder / "output.nc").stat().st_size
        size_ts = (folder / "output_ts.nc").stat().st_size
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, netCDF4 {version('netCDF4')}, "
          f"igm-core {version('igm-core')}, {time.strftime('%Y-%m-%d')}")
    print(f"outputs.local, {args.saves} saves of {len(local.DEFAULT_VARS)} fields on "
          f"{shape[0]} x {shape[1]} cells ({50 * args.ratio} m)")
    print(f"{'written MB':>11} {'output.nc MB':>13} {'written/size':>13} "
          f"{'output_ts.nc kB':>16} {'ms/save':>8}")
    print(f"{written / 1e6:>11.1f} {size / 1e6:>13.1f} {written / size:>13.2f} "
          f"{size_ts / 1e3:>16.1f} {1e3 * wall / args.saves:>8.1f}")


if __name__ == "__main__":
    main()

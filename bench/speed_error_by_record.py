"""How far a run's written surface speed is from a converged solve, at every
saved time.

For each record of an ``output.nc`` (thk, topg and velsurf_mag, as our
``outputs.local`` writes them by default), the `solved` ice flow is
converged (``solver.gtol`` 1e-3, at most 3000 L-BFGS iterations, warm
started from the previous record's field) on that record's geometry with
the default A and C, and the relative L2 difference of the surface speed
over the ice (thk > 0.1 m) is printed, then the mean over the records. The
end-of-run figure of ``bench/compare_igm.py`` is the last column; this shows
how the emulator's error moves during a run.

Usage: python bench/speed_error_by_record.py OUTPUT.nc [OUTPUT.nc ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def errors(path: Path) -> list[float]:
    """Relative L2 over ice of velsurf_mag against a converged solve, one
    per record of ``path``."""
    import netCDF4

    from igm_plugins.processes.iceflow.train_emulator import Solutions, records

    saved = records([path])  # (topg, thk, dx) of each record
    with netCDF4.Dataset(path) as ds:
        speed = np.asarray(ds["velsurf_mag"][:], "float32")
    solutions = Solutions(gtol=1e-3)  # warm started from the previous record's field
    out = []
    for record, (topg, h, dx) in enumerate(saved):
        U, V = solutions.get(record, topg, h, dx)
        ref = np.hypot(U[-1], V[-1])
        ice = h > 0.1
        out.append(float(np.linalg.norm((speed[record] - ref)[ice]) / np.linalg.norm(ref[ice])))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outputs", nargs="+", type=Path, help="output.nc files of our runs")
    args = ap.parse_args(argv)
    for path in args.outputs:
        errs = errors(path)
        print(f"{path}: " + " ".join(f"{e:.3f}" for e in errs) + f"  mean {np.mean(errs):.3f}",
              flush=True)


if __name__ == "__main__":
    main()

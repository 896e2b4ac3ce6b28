"""How cost and memory grow with the grid: a synthetic mountain range from
100 x 100 to 2000 x 2000 cells of 100 m, ours and IGM 3.2.1 side by side.

Each size's input is written by bench/synthetic_range.py (a ridge-and-valley
bed, about a third of it glaciated, the same at every size); the run is
bench/experiment/hef_century.yaml's (mass balance, ice flow, time,
thickness, vertical flow, particles, netCDF outputs; each model's default
ice flow) on that input for ``--years`` simulated years with a constant
climate: the equilibrium line at the range's, gradients as on the
Hintereisferner. Runs go through bench/compare_igm.py's machinery (IGM's
experiment translated, the loop stamped by bench/timed_entry.py, peak
memory of the process tree).

Prints one row per run: cells, wall time, loop seconds per simulated year
and per step, steps per year, peak memory and memory per cell above an
empty run (our ``igm_run`` with the time process alone on the smallest
grid), then the log-log slope of the cost against the cells and, with
``--report``, writes bench/scaling.json and bench/scaling.png.

Typical use (from the repository root, on a quiet machine):
    nice -n 10 .venv/bin/python bench/bench_scaling.py --sizes 100 200 400 800 --report
A run that passes ``--timeout`` is stopped and recorded as such; the
larger sizes are then skipped for that model. With ``--budget S`` no
larger grid is started once S seconds have passed (bench/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from argparse import Namespace
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import compare_igm as ci  # noqa: E402
import synthetic_range  # noqa: E402

DX_M = 100.0
START = 2000.0
SMB = {"gradabl": 0.009, "gradacc": 0.005, "accmax": 2.0}  # 1/yr, 1/yr, m/yr: the HEF's


def smb_array(ela_m: float, years: float) -> list[list[Any]]:
    """smb_simple's table for a constant climate at ``ela_m`` (m)."""
    head = ["time", "gradabl", "gradacc", "ela", "accmax"]
    return [head] + [[START + t, SMB["gradabl"], SMB["gradacc"], round(ela_m, 1),
                      SMB["accmax"]] for t in (0.0, years)]


def empty_experiment(base: dict[str, Any]) -> dict[str, Any]:
    """The experiment with the time process alone and no output."""
    exp = json.loads(json.dumps(base))
    exp["defaults"] = [{"override /processes": ["time"]}, {"override /outputs": []}]
    for stage in ("processes", "outputs"):
        exp[stage] = {k: v for k, v in exp.get(stage, {}).items() if k == "time"}
    return exp


def range_input(n: int, work: Path) -> tuple[Path, float]:
    """The n x n range's input file in ``work`` (written on first use, named
    after the generator's source so that a changed generator writes a new
    one) and its equilibrium-line altitude (m)."""
    source = Path(synthetic_range.__file__).read_bytes()
    path = work / "inputs" / f"range_{n}_{hashlib.sha256(source).hexdigest()[:12]}.nc"
    ela_file = path.with_suffix(".ela")
    if not (path.exists() and ela_file.exists()):
        ela_file.parent.mkdir(parents=True, exist_ok=True)
        ela_file.write_text(str(synthetic_range.write_range(path, n, DX_M)))
    return path, float(ela_file.read_text())


def measure(model: str, n: int, base: dict[str, Any], work: Path, pythons: dict[str, Path],
            years: float, role: str = "") -> ci.Measure:
    """One run of ``model`` on the n x n range; the mass balance's climate
    is set when the experiment has ``smb_simple``."""
    path, ela_m = range_input(n, work)
    settings: dict[str, Any] = {"inputs.local.filename": str(path)}
    if "smb_simple" in ci.module_lists(base).get("processes", []):
        settings["processes.smb_simple.array"] = smb_array(ela_m, years)
    case = ci.Case(model, 1, role=role or f"n{n}", settings=settings)
    m = ci.run_case(case, base, work, pythons, years)
    m.dx_m = DX_M
    m.cells = n * n
    return m


def slope(cells: list[int], values: list[float]) -> float:
    """Least-squares slope of log(values) against log(cells)."""
    ok = [(c, v) for c, v in zip(cells, values, strict=True) if v > 0 and math.isfinite(v)]
    if len(ok) < 2:
        return math.nan
    x, y = np.log([c for c, _ in ok]), np.log([v for _, v in ok])
    return float(np.polyfit(x, y, 1)[0])


def rows(measures: list[ci.Measure], baseline_mib: float, years: float) -> list[dict[str, Any]]:
    """The table: per run, cost per simulated year and per step, memory:
    kB per cell above the empty run, and marginal kB per cell (above the
    model's smallest grid, which holds the fixed costs: compiled
    functions, libraries)."""
    out = []
    smallest: dict[str, ci.Measure] = {}
    for m in measures:
        if m.status == "ok":
            smallest.setdefault(m.model, m)
        first = smallest.get(m.model)
        steps = max(m.steps - 1, 1)  # the loop after step 0
        out.append({"model": m.model, "cells": m.cells, "side": math.isqrt(m.cells),
                    "status": m.status, "wall_s": m.total_s, "startup_s": m.startup_s,
                    "s_per_yr": m.loop_s_per_yr, "ms_per_step": 1e3 * m.loop_s / steps,
                    "steps_per_yr": steps / years, "peak_mib": m.peak_mib,
                    "kb_per_cell": (m.peak_mib - baseline_mib) * 1024.0 / m.cells,
                    "marginal_kb_per_cell": math.nan if first is None or first is m else
                    (m.peak_mib - first.peak_mib) * 1024.0 / (m.cells - first.cells),
                    "volume_km3": m.volume_km3, "error": m.error})
    return out


def table(table_rows: list[dict[str, Any]]) -> str:
    head = ("model", "grid", "cells", "status", "wall s", "start-up s", "s/yr", "ms/step",
            "steps/yr", "peak MiB", "kB/cell", "marginal kB/cell")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in table_rows:
        lines.append(" | ".join([
            r["model"], f"{r['side']}x{r['side']}", f"{r['cells']:,}", r["status"],
            ci.fmt(r["wall_s"], 1), ci.fmt(r["startup_s"], 1), ci.fmt(r["s_per_yr"], 3),
            ci.fmt(r["ms_per_step"], 1), ci.fmt(r["steps_per_yr"], 1), ci.fmt(r["peak_mib"], 0),
            ci.fmt(r["kb_per_cell"], 2), ci.fmt(r["marginal_kb_per_cell"], 2)]))
    return "\n".join(f"| {line} |" for line in lines)


def exponents(table_rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model: log-log slopes of s/yr, ms/step and peak memory against cells."""
    out = {}
    for model in sorted({r["model"] for r in table_rows}):
        ok = [r for r in table_rows if r["model"] == model and r["status"] == "ok"]
        cells = [r["cells"] for r in ok]
        out[model] = {key: slope(cells, [r[key] for r in ok])
                      for key in ("s_per_yr", "ms_per_step", "peak_mib")}
    return out


def plot(table_rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for model in sorted({r["model"] for r in table_rows}):
        ok = [r for r in table_rows if r["model"] == model and r["status"] == "ok"]
        cells = [r["cells"] for r in ok]
        for ax, key in zip(axes, ("ms_per_step", "s_per_yr", "peak_mib"), strict=True):
            ax.loglog(cells, [r[key] for r in ok], "o-", label=model)
    axes[0].set(xlabel="cells", ylabel="wall ms per time step", title="cost per step")
    axes[1].set(xlabel="cells", ylabel="wall s per simulated yr", title="cost per year")
    axes[2].set(xlabel="cells", ylabel="peak resident MiB", title="memory")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save(args: Namespace, info: dict[str, str], notes: list[str], empty_mib: float,
         measures: list[ci.Measure]) -> list[dict[str, Any]]:
    """Write the record (``--json``, and bench/scaling.json with
    ``--report``); return its table rows."""
    table_rows = rows(measures, empty_mib, args.years)
    record = {"machine": info, "notes": notes, "years": args.years, "dx_m": DX_M,
              "empty_peak_mib": empty_mib, "rows": table_rows,
              "exponents": exponents(table_rows), "runs": [asdict(m) for m in measures]}
    for path in [args.json] + ([BENCH / "scaling.json"] if args.report else []):
        if path is not None:
            path.write_text(json.dumps(record, indent=1) + "\n")
    return table_rows


def parse_args(argv: list[str] | None) -> Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400, 800, 1200, 2000],
                        help="cells along each side of the square grids")
    parser.add_argument("--models", default="ours,igm", help="ours, igm or both")
    parser.add_argument("--years", type=float, default=20.0, help="simulated years per run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="longest run (s)")
    parser.add_argument("--budget", type=float, default=math.inf,
                        help="start no larger grid once this many seconds have passed")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/igm_scaling"))
    parser.add_argument("--igm-venv", type=Path, default=ci.IGM_VENV)
    parser.add_argument("--json", type=Path, help="write the record (machine, rows, fits) here")
    parser.add_argument("--report", action="store_true",
                        help="write bench/scaling.json and bench/scaling.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ci.TIMEOUT_S = args.timeout
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pythons = {"ours": ci.ours_python()}
    if "igm" in models:
        pythons["igm"] = ci.ensure_igm_venv(args.igm_venv)
    notes: list[str] = []
    base = ci.load_experiment(Namespace(years=(START, START + args.years), save=args.years),
                              notes)
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = ci.machine(pythons)
    empty = measure("ours", min(args.sizes), empty_experiment(base), args.workdir, pythons,
                    args.years, role="empty")
    measures: list[ci.Measure] = []
    stopped: set[str] = set()
    began = time.monotonic()
    for n in sorted(args.sizes):
        if time.monotonic() - began > args.budget:
            notes.append(f"--budget {args.budget:.0f} s spent: grids from {n} x {n} not run")
            print(notes[-1])
            break
        for model in models:
            if model in stopped:
                continue
            m = measure(model, n, base, args.workdir, pythons, args.years)
            measures.append(m)
            if m.status != "ok":
                stopped.add(model)  # a bigger grid would fail or time out too
            save(args, info, notes, empty.peak_mib, measures)  # survives a later stop
    table_rows = save(args, info, notes, empty.peak_mib, measures)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in info.items()))
    print(f"empty run (time process only, {min(args.sizes)}^2 cells): peak "
          f"{empty.peak_mib:.0f} MiB")
    print(table(table_rows))
    for model, fit in exponents(table_rows).items():
        print(f"{model}: cost per simulated year ~ cells^{fit['s_per_yr']:.2f}, per step "
              f"~ cells^{fit['ms_per_step']:.2f}, peak memory ~ cells^{fit['peak_mib']:.2f}")
    if args.report:
        plot(table_rows, BENCH / "scaling.png")
        print(f"wrote {BENCH / 'scaling.png'}")
    return 0 if all(m.status == "ok" for m in measures) else 1


if __name__ == "__main__":
    sys.exit(main())

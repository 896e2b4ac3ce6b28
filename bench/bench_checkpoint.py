"""The cost of checkpoints on the default Hintereisferner century (50 m).

Runs ``igm_run +experiment=hintereisferner`` twice in fresh processes: once
without checkpoints, once with one every ``--every`` simulated years, and
reads from each run's ``igm.log`` and ``run_summary.json``: the time of every
checkpoint (the kernel logs it), the checkpoint file size, and the loop time
(the sum of the per-plugin update times). The cost at the default interval
(``core.checkpoint.every_minutes``: 10 minutes of wall time) is one
checkpoint's time over that interval.

Usage: python bench/bench_checkpoint.py [--every 10] [--ratio 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

DEFAULT_MINUTES = 10.0  # core.checkpoint.every_minutes
LINE = re.compile(r"checkpoint \((?P<why>[^)]*)\) at t=\S+ yr \(step \d+\): \S+, "
                  r"(?P<mb>[\d.]+) MB in (?P<s>[\d.]+) s")


def igm_run() -> str:
    exe = Path(sys.executable).with_name("igm_run")
    return str(exe) if exe.exists() else shutil.which("igm_run") or "igm_run"


def run(folder: Path, ratio: int, checkpoints: list[str]) -> dict[str, float]:
    """One century; loop time (s), wall time (s) and the checkpoints' figures."""
    args = [igm_run(), "+experiment=hintereisferner", f"inputs.local.coarsening.ratio={ratio}",
            "core.progress=off", "core.print_params=false", f"hydra.run.dir={folder}",
            *checkpoints]
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=folder.parent, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((folder / "run_summary.json").read_text())
    loop = sum(r["total_s"] for r in summary["timings"] if r["hook"] == "update")
    found = [m.groupdict() for m in LINE.finditer((folder / "igm.log").read_text())]
    seconds = [float(f["s"]) for f in found]
    return {"wall_s": wall, "loop_s": loop, "count": len(found),
            "mean_s": sum(seconds) / len(seconds) if seconds else 0.0,
            "max_s": max(seconds, default=0.0),
            "size_mb": max((float(f["mb"]) for f in found), default=0.0),
            "steps": summary["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=10.0, help="simulated years (default 10)")
    parser.add_argument("--ratio", type=int, default=1, help="coarsening ratio (1: 50 m)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="igm-bench-ckpt-") as tmp:
        root = Path(tmp)
        plain = run(root / "plain", args.ratio, ["core.checkpoint.every_minutes=0",
                                                 "core.checkpoint.at_end=false"])
        dense = run(root / "dense", args.ratio, [f"core.checkpoint.every_years={args.every}",
                                                 "core.checkpoint.every_minutes=0",
                                                 "core.checkpoint.keep=2"])
    spent = dense["count"] * dense["mean_s"]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, TensorFlow {version('tensorflow')}, "
          f"igm-core {version('igm-core')}, {time.strftime('%Y-%m-%d')}")
    print(f"Hintereisferner century at {50 * args.ratio} m, {dense['steps']} steps")
    print(f"{'run':<28} {'loop s':>8} {'wall s':>8} {'ckpts':>6} {'s/ckpt':>8} "
          f"{'max s':>7} {'MB':>6} {'cost %':>7}")
    print(f"{'no checkpoints':<28} {plain['loop_s']:>8.1f} {plain['wall_s']:>8.1f} "
          f"{0:>6} {'':>8} {'':>7} {'':>6} {'':>7}")
    print(f"{f'every {args.every:g} simulated years':<28} {dense['loop_s']:>8.1f} "
          f"{dense['wall_s']:>8.1f} {dense['count']:>6} {dense['mean_s']:>8.3f} "
          f"{dense['max_s']:>7.3f} {dense['size_mb']:>6.1f} "
          f"{100 * spent / plain['loop_s']:>7.2f}")
    print(f"{'default (every 10 min wall)':<28} {'':>8} {'':>8} {'':>6} {dense['mean_s']:>8.3f} "
          f"{'':>7} {'':>6} {100 * dense['mean_s'] / (60 * DEFAULT_MINUTES):>7.3f}")


if __name__ == "__main__":
    main()

"""Sweep summaries: one table and one plot for a multirun folder.

When a multirun ends (all jobs done, or the sweep stopped on a failed or
cancelled job), ``summary.csv`` (one row per job: overrides, status, wall
time, final volume and area, objective, start and end times, host,
devices, error) and ``summary.png`` (ice volume against time, one line per
job labelled by its overrides) are written in the sweep folder from each
job's ``run_summary.json``, and the failed jobs are listed with their
errors. ``igm_core.app.SweepSummary`` is the Hydra callback that does it
(registered in ``conf/config.yaml``); ``igm_run --summary DIR`` does it for
an existing sweep folder. No Hydra import here.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from igm_core.files import atomic_path

COLUMNS = ("job", "overrides", "status", "attempts", "wall_time_s", "volume_km3", "area_km2",
           "objective", "started_at", "ended_at", "host", "devices", "error", "folder")
MAX_LEGEND = 20  # jobs beyond which summary.png has no legend (see summary.csv)
NOT_FINISHED = "did not finish (killed, cancelled or timed out): run_summary.json says 'running'"
NO_SUMMARY = "no run_summary.json (the job never started, or was killed before writing it)"
NOT_STARTED = "never started (the sweep stopped before it)"
MANIFEST = "sweep_jobs.json"  # every job of the sweep, written by igm-core's launchers

# Sweep folder of the multirun in progress in this process (set by
# :func:`start`, cleared once its summary is written).
_pending: Path | None = None


def job_folders(sweep_dir: str | Path) -> list[Path]:
    """Job folders of a sweep (each holds Hydra's ``.hydra`` folder or a
    ``run_summary.json``), in job-number order where names are numbers."""
    root = Path(sweep_dir)
    found = {p.parent for p in root.rglob(".hydra") if p.is_dir() and p.parent != root}
    found |= {p.parent for p in root.rglob("run_summary.json") if p.parent != root}

    def key(path: Path) -> tuple[int, str]:
        name = path.relative_to(root).as_posix()
        return (int(name), name) if name.isdigit() else (1 << 30, name)

    return sorted(found, key=key)


def _overrides(folder: Path) -> list[str]:
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [ln[2:].strip().strip("'\"") for ln in path.read_text().splitlines()
            if ln.startswith("- ")]


def read_job(folder: Path, root: Path) -> dict[str, Any]:
    """One job's summary record (``run_summary.json`` plus its folder). A job
    that did not finish is marked ``failed`` with the reason in ``error``."""
    path = folder / "run_summary.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        record = {"status": "failed", "error": NO_SUMMARY}
    except (OSError, ValueError) as exc:
        record = {"status": "failed", "error": f"unreadable run_summary.json: {exc}"}
    if record.get("status") == "running":
        record.update(status="failed", error=NOT_FINISHED)
    record.setdefault("overrides", _overrides(folder))
    name = folder.relative_to(root).as_posix()
    record.setdefault("job_num", int(name) if name.isdigit() else None)
    record["folder"] = name
    return record


def read_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Records of every job of a sweep folder (see :func:`read_job`), and of
    the jobs of its manifest that never started (status ``not started``)."""
    root = Path(sweep_dir)
    records = [read_job(folder, root) for folder in job_folders(root)]
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    seen = {r.get("job_num") for r in records}
    for num, job in sorted(manifest.items(), key=lambda kv: int(kv[0])):
        if int(num) not in seen:
            folder = Path(job["folder"])
            records.append({"job_num": int(num), "overrides": job["overrides"],
                            "status": "not started", "error": NOT_STARTED,
                            "folder": folder.name if folder.parent == root else str(folder)})
    return sorted(records, key=lambda r: (r.get("job_num") is None, r.get("job_num") or 0))


def label(record: dict[str, Any]) -> str:
    """A job's label: its overrides, or its folder name when it has none."""
    return " ".join(record.get("overrides") or []) or f"job {record['folder']}"


def _cell(record: dict[str, Any], column: str) -> Any:
    if column == "job":
        return record.get("job_num")
    value = record.get(column)
    if column in ("overrides", "devices") and isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def write_csv(records: list[dict[str, Any]], path: Path) -> Path:
    """``summary.csv``: one row per job, columns :data:`COLUMNS` (volume in
    km3, area in km2, wall time in s, start and end as Unix times in s)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for record in records:
            writer.writerow([_cell(record, c) for c in COLUMNS])
    return path


def write_plot(records: list[dict[str, Any]], path: Path) -> Path:
    """``summary.png``: ice volume (km3) against time (yr), one line per job
    labelled by the overrides that differ between jobs (those they share go
    in the title); failed jobs dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shared = set.intersection(*(set(r.get("overrides") or []) for r in records)) \
        if len(records) > 1 else set()
    for record in records:
        series = record.get("series") or {}
        t, v = series.get("t") or [], series.get("volume_km3") or []
        if not t:
            continue
        failed = record.get("status") != "completed"
        ax.plot(t, [float("nan") if x is None else x for x in v], marker=".",
                linestyle="--" if failed else "-",
                label=label({**record, "overrides": [o for o in record.get("overrides") or []
                                                     if o not in shared]})
                + (" (failed)" if failed else ""))
    ax.set_xlabel("time (yr)")
    ax.set_ylabel("ice volume (km$^3$)")
    ax.set_title(plot_title(len(records), shared), fontsize="medium")
    if 0 < len(ax.lines) <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="best")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_title(jobs: int, shared: set[str]) -> str:
    """The title of ``summary.png``: the number of jobs and the overrides
    they share, wrapped to at most three lines the figure's width holds (the
    rest is in ``summary.csv``)."""
    title = f"{jobs} jobs" + (f": {' '.join(sorted(shared))}" if shared else "")
    return textwrap.fill(title, width=90, max_lines=3, placeholder=" ... (see summary.csv)")


def failure_report(records: list[dict[str, Any]], sweep_dir: str | Path = "") -> str:
    """Lines naming each job that did not complete (failed, interrupted,
    not started) with its overrides and error, or ''."""
    groups = (("failed", "failed:"),
              ("interrupted", f"interrupted (igm_run --resume {sweep_dir} continues them):"),
              ("not started", f"not started (igm_run --resume {sweep_dir} runs them):"))
    lines = []
    for status, head in groups:
        these = [r for r in records if (r.get("status") or "failed") == status
                 or (status == "failed" and r.get("status") not in
                     ("completed", "interrupted", "not started"))]
        if these:
            lines.append(f"{len(these)} of {len(records)} jobs {head}")
            lines += [f"  job {r['folder']} ({label(r)}): {r.get('error') or r.get('status')}"
                      for r in these]
    return "\n".join(lines)


def summarize(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.png`` in ``sweep_dir``; return the
    job records."""
    root = Path(sweep_dir)
    if not root.is_dir():
        from igm_core.errors import ConfigError

        raise ConfigError(f"sweep folder not found: {root}")
    records = read_sweep(root)
    write_csv(records, root / "summary.csv")
    write_plot(records, root / "summary.png")
    return records


def report(sweep_dir: str | Path, records: list[dict[str, Any]]) -> str:
    """The end-of-sweep report: jobs completed, where the summary is, and
    each failed job with its error."""
    done = sum(r.get("status") == "completed" for r in records)
    head = (f"sweep summary: {done} of {len(records)} jobs completed; "
            f"{Path(sweep_dir) / 'summary.csv'}, summary.png")
    failures = failure_report(records, sweep_dir)
    return f"{head}\n{failures}" if failures else head


def finish_pending() -> None:
    """Summarize the sweep that started in this process and has not been
    summarized yet, and print the report on stderr (a multirun that stopped
    on a failed job never reaches Hydra's ``on_multirun_end``, so
    ``igm_run`` calls this on exit too)."""
    global _pending
    if _pending is not None and _pending.is_dir():
        sweep_dir, _pending = _pending, None
        print(report(sweep_dir, summarize(sweep_dir)), file=sys.stderr, flush=True)


def start(sweep_dir: str | Path) -> None:
    """Note the sweep folder of the multirun starting in this process."""
    global _pending
    _pending = Path(sweep_dir)

"""``igm_run``: the Hydra front end, the only module that imports Hydra.

``igm_run +experiment=NAME key=value ...`` composes one configuration from
``igm_core.conf`` (shipped), ``./experiment/NAME.yaml`` and the command
line, validates it against the core's and every plugin's ``Params``
dataclass, runs :func:`igm_core.engine.run` and returns the run's objective.
``igm_run --plugins`` lists the installed plugins, ``--summary`` tabulates a
sweep, ``--resume`` continues a run or sweep, ``--version`` prints igm-core's
version; ``python -m igm_core`` is ``igm_run``.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import logging
import math
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.igm_launchers import launchers
from igm_core import data, engine, hardware, interrupts, resume, runfolder, sweep
from igm_core.config import CoreParams, Objective
from igm_core.context import RunContext
from igm_core.errors import ConfigError, IgmError, PluginError, RunInterrupted
from igm_core.files import write_json
from igm_core.observers import format_timings
from igm_core.plugins import (
    SINGULAR,
    STAGES,
    PluginEntry,
    discover,
    format_listing,
    unknown_plugin_message,
)
from igm_core.quiet import quiet_tensorflow

log = logging.getLogger("igm")
MAX_ERROR_CHARS = 600
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


# -- configuration schemas -------------------------------------------------

_unloadable: dict[str, PluginError] = {}  # "stage.name" -> why it cannot be loaded


def register_configs(found: dict[str, dict[str, PluginEntry]]) -> None:
    """Store the core schema and each installed plugin's ``Params`` in
    Hydra's ConfigStore (group = stage, option = plugin name, nested under
    the name). A plugin that fails to import (or whose name two
    distributions claim) gets an empty schema; selecting it reports its
    error when the run starts, and so does any key given to it."""
    launchers.register()
    cs = ConfigStore.instance()
    cs.store(group="core", name="default", node=CoreParams)
    for stage, entries in found.items():
        for name, entry in entries.items():
            try:
                params_cls = entry.load().Params
            except PluginError as exc:
                _unloadable[f"{stage}.{name}"] = exc
                params_cls = dataclasses.make_dataclass(f"Unimportable_{name}", [])
            cs.store(group=stage, name=name, node={name: params_cls})


def check_listed_once(config_name: str, overrides: list[str]) -> None:
    """Refuse a plugin listed twice in a stage's list (``processes=[thk,thk]``
    or an experiment's defaults): Hydra merges both into one node, so it
    would silently run once. Needs Hydra initialised (inside a job)."""
    if not GlobalHydra.instance().is_initialized():
        return
    defaults = GlobalHydra.instance().config_loader().compute_defaults_list(
        config_name, overrides, RunMode.RUN).defaults
    listed = [str(d.config_path) for d in defaults if str(d.config_path).split("/")[0] in STAGES]
    for path in listed:
        if listed.count(path) > 1:
            stage, name = path.split("/", 1)
            raise ConfigError(f"{stage} lists '{name}' {listed.count(path)} times: a plugin "
                              f"runs once per step, list it once")


def selection_from(cfg: DictConfig, found: dict[str, dict[str, PluginEntry]]
                   ) -> dict[str, list[tuple[PluginEntry, Any]]]:
    """The selected plugins of each stage, in configuration order, with
    their Params instances.

    A plugin is selected by the stage's list (``processes: [...]``), which
    gives its node the plugin's schema. Keys set for a plugin that the list
    does not select (an experiment body configuring ``particles`` while the
    command line picks ``'processes=[time,thk]'``) are ignored, with a
    warning."""
    selection: dict[str, list[tuple[PluginEntry, Any]]] = {}
    for stage in STAGES:
        node = cfg.get(stage) or {}
        chosen = []
        for name in node:
            if OmegaConf.get_type(node[name]) is dict:
                log.warning("%s.%s is configured but '%s' is not in the %s list: ignored",
                            stage, name, name, stage)
                continue
            if name not in found[stage]:
                raise PluginError(unknown_plugin_message(stage, str(name), found[stage]))
            entry = found[stage][name]
            entry.load()  # its import error first, whatever keys it was given
            schema = OmegaConf.get_type(node[name])
            known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(
                schema) else set(node[name])
            extra = sorted(set(node[name]) - known)
            if extra:
                raise ConfigError(f"{stage}.{name}.{extra[0]} is not a parameter of "
                                  f"{SINGULAR[stage]} '{name}' (parameters: "
                                  f"{', '.join(sorted(known)) or 'none'})")
            chosen.append((entry, OmegaConf.to_object(node[name])))
        selection[stage] = chosen
    return selection


# -- the job -----------------------------------------------------------------


def _setup_logging(core: CoreParams, output_dir: Path) -> None:
    log.setLevel(core.level if core.logging else logging.WARNING)
    if core.logging_file:
        path = Path(core.logging_file)
        handler = logging.FileHandler(path if path.is_absolute() else output_dir / path)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)


def objective(core: CoreParams, result: engine.RunResult) -> float:
    """The number the job returns to Hydra (and its sweepers)."""
    change = result.volume_km3 - result.volume_start_km3
    values = {
        Objective.volume: result.volume_km3,
        Objective.area: result.area_km2,
        Objective.volume_change: change,
        Objective.volume_change_misfit: abs(change - core.objective_target),
    }
    return float(values[core.objective])


_single_run_errors: list[Exception] = []
_interruptions: list[str] = []


def _context(hc: Any, core: CoreParams) -> RunContext:
    multirun = hc.mode == RunMode.MULTIRUN
    launch_dir = Path(hc.runtime.cwd)
    data_dir = Path(core.folder_data).expanduser()
    return RunContext(
        output_dir=Path(hc.runtime.output_dir),
        launch_dir=launch_dir,
        data_dir=data_dir if data_dir.is_absolute() else launch_dir / data_dir,
        job_num=int(hc.job.num) if multirun else 0,
        multirun=multirun,
        overrides=tuple(hc.overrides.task),
    )


def _error_line(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, IgmError) else f"{type(exc).__name__}: {exc}"


def run_job(cfg: DictConfig) -> float:
    """Hydra task function: one run in its Hydra output folder.

    Checks every parameter, takes the folder's lock, and runs, continues or
    (for a run already completed there) skips the run, see
    :mod:`igm_core.runfolder`. Writes ``config_resolved.yaml`` and
    ``run_summary.json`` there and returns the objective
    (``core.objective``). A signal that stops the run leaves it
    ``interrupted`` with a checkpoint, and ends the process (exit status
    128 + the signal) after the handler that was there before (submitit's
    requeue) has seen it."""
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    result = engine.RunResult()
    summary: dict[str, Any] = {"job_num": int(hc.job.num) if multirun else 0,
                               "overrides": list(hc.overrides.task), "status": "running",
                               "started_at": time.time(), **hardware.process_info()}
    lock = runfolder.RunLock(output_dir)
    owned = False  # write run_summary.json only in a folder this run may write in
    core: CoreParams | None = None
    stop: BaseException | None = None
    try:
        lock.acquire()  # another run's folder: refused before anything is written
        previous = runfolder.previous_run(output_dir)
        owned = not previous.summary
        summary["attempts"] = previous.attempts + 1
        core = OmegaConf.to_object(cfg.core)
        _setup_logging(core, output_dir)
        check_listed_once(str(hc.job.config_name), list(hc.overrides.task))
        selection = selection_from(cfg, discover())
        ctx = _context(hc, core)
        step = runfolder.plan(output_dir, previous,
                              OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                              core.restart, ctx.launch_dir)
        if step.action == "done":
            log.warning("run folder %s already holds this run, completed: nothing to do "
                        "(another hydra.run.dir runs it again)", output_dir)
            return previous.summary.get("objective", math.nan)
        owned = True
        resolved = OmegaConf.to_yaml(cfg, resolve=True)
        (output_dir / runfolder.CONFIG).write_text(resolved)
        write_json(output_dir / runfolder.SUMMARY, summary)  # a killed job stays "running"
        if core.print_params:
            log.info("parameters:\n%s", resolved)
        if step.reason:
            log.info("%s", step.reason)
        with interrupts.Interrupts() as signals:
            placement = hardware.configure(core.hardware, ctx.job_num, hc.launcher)
            summary.update(placement.as_dict())
            if core.url_data:
                data.fetch(core.url_data, ctx.data_dir, timeout_s=core.url_data_timeout_s,
                           max_mb=core.url_data_max_mb, sha256=core.url_data_sha256)
            summary.update(hardware.run_engine(selection, ctx, core.progress.value, result,
                                               placement, core.checkpoint, step.checkpoint,
                                               signals))
        summary["objective"] = objective(core, result)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        result.status = "interrupted"
        result.error = result.error or (str(exc) if isinstance(exc, RunInterrupted) else
                                        "interrupted by Ctrl-C (SIGINT)")
        stop = exc
    except BaseException as exc:
        result.status = "failed"
        result.error = result.error or _error_line(exc)
        _to_log_files(f"igm_run: error: {result.error}")
        if multirun or not isinstance(exc, Exception):
            raise
        # A single run hands its error to main(), which prints it as one line
        # (Hydra would add its own "Error executing job" line).
        _single_run_errors.append(exc)
        return math.nan
    finally:
        if owned:
            summary.update(result.as_dict())
            summary.setdefault("devices", hardware.devices())
            summary["ended_at"] = time.time()
            _write_summary(output_dir / runfolder.SUMMARY, summary)
        lock.release()
        if core is not None and core.print_comp and result.timings:
            log.info("time spent per plugin:\n%s", format_timings(result.timings))
    if stop is not None:
        _stopped(stop, Path(str(hc.sweep.dir)) if multirun else output_dir)
    log.info("run %s in %.1f s: %d steps, ice volume %.4f km3, area %.3f km2",
             result.status, result.wall_time_s, result.steps, result.volume_km3, result.area_km2)
    return summary["objective"]


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the final run_summary.json; a failure to write it (a full
    disk) is one warning and leaves the run's status as it is."""
    try:
        write_json(path, summary)
    except OSError as exc:
        log.warning("could not write %s (%s): the run %s, but the file may still say "
                    "'running'", path, exc.strerror or exc, summary["status"])


def _to_log_files(line: str) -> None:
    """Append ``line`` to the run's log files (igm.log, core.logging_file)
    without printing it: main() prints the error line once."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (line,), None)
    for handler in {*logging.getLogger().handlers, *log.handlers}:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _stopped(exc: BaseException, resume_dir: Path) -> None:
    """End the process after a run stopped by a signal: one line (kept for
    main()) saying how to continue (``igm_run --resume`` of the run or sweep
    folder), then the handler that was there before (submitit requeues the
    job on SIGUSR2), then exit with 128 + the signal."""
    signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
    line = (f"{exc if isinstance(exc, RunInterrupted) else 'interrupted by Ctrl-C (SIGINT)'}; "
            f"continue it with: igm_run --resume {resume_dir}")
    log.warning("%s", line)
    _interruptions.append(line)
    if isinstance(exc, RunInterrupted):
        interrupts.forward(signum)
    raise SystemExit(128 + signum)


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml): writes
    ``summary.csv`` and ``summary.png`` in the sweep folder when a multirun
    ends; ``main`` does it for a sweep that stopped on a failed job."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.start(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.finish_pending()


_hydra_main = hydra.main(version_base="1.3", config_path="pkg://igm_core.conf",
                         config_name="config")(run_job)


# -- one-line errors -----------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _unloadable_behind(exc: BaseException) -> PluginError | None:
    """The load error of a plugin that cannot be loaded, when a key given to
    it is what composition tripped over (its schema is empty)."""
    text = " ".join(f"{e} {getattr(e, 'full_key', '')}" for e in _chain(exc))
    for key, error in _unloadable.items():
        name = key.split(".", 1)[1]
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", text) or (
                f"Unimportable_{name}" in text):
            return error
    return None


def _key_hint(err: OmegaConfBaseException) -> str:
    key = getattr(err, "key", None)
    obj_type = getattr(err, "object_type", None)
    fields = list(getattr(obj_type, "__dataclass_fields__", {}) or {})
    if key is None or str(key) in fields:
        return ""
    close = difflib.get_close_matches(str(key), fields, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _yaml_boolean_hint(msg: str) -> str:
    """A hint when YAML turned an unquoted choice (off, no, on, yes) into a
    boolean that the choice's Enum refuses."""
    if re.match(r"Invalid value '(True|False)', expected one of", msg):
        return ("; YAML reads an unquoted off, no, on or yes as a boolean: quote the "
                "choice (\"off\")")
    return ""


def explain(exc: BaseException, found: dict[str, dict[str, PluginEntry]] | None) -> str:
    """One line describing a composition or run error for the user."""
    if isinstance(exc, IgmError):
        return str(exc)
    if isinstance(exc, MissingConfigException):
        group, _, name = str(exc.missing_cfg_file or "").partition("/")
        if group in STAGES and found is not None:
            return unknown_plugin_message(group, name, found[group])
        if group == "experiment":
            shipped = ", ".join(o for o in exc.options or []) or "none"
            return (f"experiment file not found: no 'experiment/{name}.yaml' in "
                    f"{Path.cwd()} (experiments found: {shipped})")
        return " ".join(str(exc).split("\n")[0].split())
    if isinstance(exc, (ConfigCompositionException, OmegaConfBaseException)):
        broken = _unloadable_behind(exc)
        if broken is not None:
            return str(broken)
        text = str(exc)
        source = re.search(r"(?:Error merging|^In) '([^']+)'", text)
        override = re.search(r"Error merging override (\S+)", text) or re.search(
            r"Could not override '([^']+)'", text)
        where = (f"in '{source.group(1)}.yaml'" if source else
                 f"in override '{override.group(1)}'" if override else "in the configuration")
        for err in _chain(exc):
            if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
                msg = str(getattr(err, "msg", "") or err).split("\n")[0].strip()
                return (f"{where}: {msg} (key '{err.full_key}'){_key_hint(err)}"
                        f"{_yaml_boolean_hint(msg)}")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return f"{where}: " + "; ".join(lines)
    text = " ".join(str(exc).split(" Error stream produced")[0].split())
    return f"{type(exc).__name__}: {text[:MAX_ERROR_CHARS]}"


def _debug_requested(argv: list[str]) -> bool:
    debug_args = {"core.logging_level=debug", "core.logging_level=10"}
    return (any(a.lower() in debug_args for a in argv)
            or os.environ.get("IGM_DEBUG", "") not in ("", "0")
            or os.environ.get("HYDRA_FULL_ERROR", "") == "1")


def console() -> None:
    """The ``igm_run`` script and ``python -m igm_core``: :func:`main`, then
    the interpreter's exit without its cyclic garbage collections walking
    every object left (TensorFlow's alone take about 0.45 s); the exit
    handlers still run (files flush and close, logs end)."""
    try:
        main()
    finally:
        gc.freeze()


def main() -> None:
    """``igm_run`` with the arguments in ``sys.argv``."""
    argv = sys.argv[1:]
    if "--version" in argv:
        from importlib.metadata import version

        import igm_core

        print(f"igm_run (igm-core {igm_core.__version__}; Hydra {version('hydra-core')})")
        return
    if "--plugins" in argv:
        try:
            print(format_listing(discover()))
        except IgmError as exc:
            sys.exit(f"igm_run: error: {exc}")
        return
    if "--summary" in argv:
        folders = argv[argv.index("--summary") + 1:] or ["."]
        try:
            for folder in folders:
                print(sweep.report(folder, sweep.summarize(folder)))
        except IgmError as exc:
            sys.exit(f"igm_run: error: {exc}")
        return
    if "--resume" in argv:
        try:
            sys.argv[1:] = resume.arguments(argv)
        except IgmError as exc:
            sys.exit(f"igm_run: error: {exc}")
        argv = sys.argv[1:]
    debug = _debug_requested(argv)
    quiet_tensorflow(debug)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    found = None
    try:
        found = discover()
        register_configs(found)
        _hydra_main()
        if _single_run_errors:
            raise _single_run_errors.pop()
    except SystemExit:
        if _interruptions:
            sweep.finish_pending()
            print(f"igm_run: {_interruptions[-1]}", file=sys.stderr, flush=True)
        raise
    except KeyboardInterrupt:
        sweep.finish_pending()
        sys.exit("igm_run: interrupted by Ctrl-C (SIGINT)")
    except BaseException as exc:
        if debug:
            traceback.print_exc()
        sys.exit(f"igm_run: error: {explain(exc, found)}")
    finally:
        sweep.finish_pending()

"""Plugin discovery, loading, validation and ordered dispatch.

Plugins are found through the entry-point groups ``igm.inputs``,
``igm.processes`` and ``igm.outputs`` (the built-in ones exactly as a third
party's). Entry points are read here, not with pluggy's loader, so that a
name claimed by two distributions fails loudly (in the runs that select it,
and in ``igm_run --plugins``), and so that plugins run in the order the
configuration lists them. Listing plugins imports nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from igm_core import hookspecs
from igm_core.context import PluginInfo
from igm_core.errors import PluginError
from igm_core.state import KNOWN_FIELDS, Field

STAGES: tuple[str, ...] = ("inputs", "processes", "outputs")
SINGULAR = {"inputs": "input", "processes": "process", "outputs": "output"}
GROUP_PREFIX = "igm."
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)
_IMPL_ATTR = f"{hookspecs.PROJECT_NAME}_impl"
_ALL_HOOKS = tuple(h for hooks in hookspecs.STAGE_HOOKS.values() for h in hooks) + (
    hookspecs.LIFECYCLE_HOOKS
)


@dataclass(frozen=True)
class PluginEntry:
    """An installed plugin, as its entry point declares it."""

    stage: str
    name: str
    value: str
    distribution: str
    version: str
    clash: str = ""  # the error line when two distributions claim this name

    @property
    def label(self) -> str:
        """``process 'thk'`` style label for messages."""
        return f"{SINGULAR[self.stage]} '{self.name}'"

    @property
    def info(self) -> PluginInfo:
        """Provenance record."""
        return PluginInfo(self.stage, self.name, self.distribution, self.version, self.value)

    def load(self) -> Any:
        """Import the plugin module (or object); raise a one-line PluginError
        naming plugin, distribution and the import error (or the two
        distributions claiming the name)."""
        if self.clash:
            raise PluginError(self.clash)
        module_name, _, attr = self.value.partition(":")
        try:
            obj: Any = importlib.import_module(module_name.strip())
            for part in filter(None, attr.strip().split(".")):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{self.label} (distribution {self.distribution} {self.version}) failed to "
                f"import '{self.value}': {type(exc).__name__}: {exc}"
            ) from exc
        params_cls = getattr(obj, "Params", None)
        if not (inspect.isclass(params_cls) and dataclasses.is_dataclass(params_cls)):
            raise PluginError(
                f"{self.label} (distribution {self.distribution}) has no dataclass 'Params' "
                f"in '{self.value}': every plugin ships its parameters as a dataclass"
            )
        return obj


def discover() -> dict[str, dict[str, PluginEntry]]:
    """All installed plugins, per stage, by name. Imports no plugin.

    A name that two distributions claim in a stage is kept with its
    ``clash`` line: loading it (selecting it) raises that error.
    """
    found: dict[str, dict[str, PluginEntry]] = {}
    for stage in STAGES:
        by_name: dict[str, PluginEntry] = {}
        for ep in entry_points(group=GROUP_PREFIX + stage):
            dist = ep.dist
            entry = PluginEntry(
                stage=stage,
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            )
            other = by_name.get(ep.name)
            if other is not None and dataclasses.replace(other, clash="") != entry:
                a, b = sorted((other, entry), key=lambda e: (e.distribution, e.value))
                entry = dataclasses.replace(other, clash=other.clash or (
                    f"two distributions claim {entry.label} (group {GROUP_PREFIX}{stage}): "
                    f"{a.distribution} {a.version} ({a.value}) and "
                    f"{b.distribution} {b.version} ({b.value}); uninstall one"))
            by_name[ep.name] = entry
        found[stage] = dict(sorted(by_name.items()))
    return found


def unknown_plugin_message(stage: str, name: str, installed: Iterable[str]) -> str:
    """One line for a plugin name that is not installed, with suggestions."""
    names = sorted(installed)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"unknown {SINGULAR[stage]} plugin '{name}'{hint}; installed {stage}: "
            f"{', '.join(names) or 'none'}")


def format_listing(found: Mapping[str, Mapping[str, PluginEntry]]) -> str:
    """The table printed by ``igm_run --plugins``."""
    lines: list[str] = []
    for stage in STAGES:
        lines.append(f"{stage} (entry-point group {GROUP_PREFIX}{stage}):")
        entries = list(found.get(stage, {}).values())
        if not entries:
            lines.append("  (none installed)")
        width = max((len(e.name) for e in entries), default=0)
        for e in entries:
            lines.append(f"  {e.name:<{width}}  {e.distribution} {e.version}  ({e.value})"
                         + (f"\n  {'':<{width}}  CLASH: {e.clash}" if e.clash else ""))
    return "\n".join(lines)


# -- declared fields -----------------------------------------------------


def _as_fields(plugin: LoadedPlugin, value: Any, what: str) -> list[Field]:
    if callable(value):
        value = value(plugin.params)
    if value is None:
        return []
    if isinstance(value, (str, Field)):
        value = (value,)
    out: list[Field] = []
    for item in value:
        if isinstance(item, Field):
            out.append(item)
        elif isinstance(item, str):
            out.append(KNOWN_FIELDS.get(item, Field(item, "1", item)))
        else:
            raise PluginError(f"{plugin.entry.label}: '{what}' must list field names or "
                              f"igm_core.Field records, got {item!r}")
    return out


@dataclass
class LoadedPlugin:
    """A selected plugin: its entry, module, parameters and hook callers."""

    entry: PluginEntry
    module: Any
    params: Any
    callers: dict[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Registration name, ``stage.name``."""
        return f"{self.entry.stage}.{self.entry.name}"

    def requires(self) -> list[Field]:
        """Fields this plugin reads and another plugin must provide."""
        return _as_fields(self, getattr(self.module, "requires", ()), "requires")

    def provides(self) -> list[Field]:
        """Fields this plugin writes."""
        return _as_fields(self, getattr(self.module, "provides", ()), "provides")


def _check_hook_names(entry: PluginEntry, module: Any) -> None:
    stage_hooks = hookspecs.STAGE_HOOKS[entry.stage]
    allowed = set(stage_hooks) | set(hookspecs.LIFECYCLE_HOOKS)
    implemented = []
    for attr in dir(module):
        obj = getattr(module, attr, None)
        marked = callable(obj) and hasattr(obj, _IMPL_ATTR)
        if not (marked or (attr.startswith("igm_") and inspect.isfunction(obj))):
            continue
        opts = getattr(obj, _IMPL_ATTR, None) or {}
        hook = opts.get("specname") or attr
        if hook not in _ALL_HOOKS:
            close = difflib.get_close_matches(hook, _ALL_HOOKS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise PluginError(f"{entry.label} ({entry.distribution}) implements unknown hook "
                              f"'{hook}'{hint}; {entry.stage} hooks: {', '.join(stage_hooks)}")
        if not marked:
            raise PluginError(f"{entry.label} ({entry.distribution}): function '{attr}' is not "
                              "marked with @igm_core.hookimpl")
        if hook not in allowed:
            raise PluginError(f"{entry.label} ({entry.distribution}) implements '{hook}', a hook "
                              f"of another stage; {entry.stage} hooks: {', '.join(stage_hooks)}")
        if opts.get("tryfirst") or opts.get("trylast"):
            raise PluginError(f"{entry.label}: '{hook}' uses tryfirst/trylast; the "
                              "configuration alone sets the order of plugins")
        implemented.append(hook)
    if not set(implemented) & set(stage_hooks):
        raise PluginError(f"{entry.label} ({entry.distribution}) implements none of the "
                          f"{entry.stage} hooks: {', '.join(stage_hooks)}")


class PluginSet:
    """The selected plugins, registered on a fresh pluggy manager and called
    in configuration order.

    ``observers`` (objects with hook implementations, e.g. timing wrappers
    or progress reporters) see every call.
    """

    def __init__(self, selection: Mapping[str, list[tuple[PluginEntry, Any]]],
                 observers: Iterable[Any] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.stages: dict[str, list[LoadedPlugin]] = {s: [] for s in STAGES}
        for stage in STAGES:
            for entry, params in selection.get(stage, []):
                module = entry.load()
                _check_hook_names(entry, module)
                plugin = LoadedPlugin(entry, module, params)
                try:
                    self.pm.register(module, name=plugin.key)
                except (pluggy.PluginValidationError, ValueError) as exc:
                    raise PluginError(f"{entry.label} ({entry.distribution}) breaks the hook "
                                      f"contract: {' '.join(str(exc).split())}") from exc
                self.stages[stage].append(plugin)
        for observer in observers:
            self.pm.register(observer)
        self.pm.check_pending()
        everyone = [p.module for plugins in self.stages.values() for p in plugins]
        for stage, plugins in self.stages.items():
            for plugin in plugins:
                others = [m for m in everyone if m is not plugin.module]
                for hook in hookspecs.STAGE_HOOKS[stage]:
                    plugin.callers[hook] = self.pm.subset_hook_caller(hook, others)

    @property
    def infos(self) -> tuple[PluginInfo, ...]:
        """Provenance of the selected plugins, in stage and list order."""
        return tuple(p.entry.info for s in STAGES for p in self.stages[s])

    def providers(self) -> dict[str, str]:
        """Field name -> label of the first selected plugin providing it."""
        out: dict[str, str] = {}
        for stage in STAGES:
            for p in self.stages[stage]:
                for f in p.provides():
                    out.setdefault(f.name, p.entry.label)
        return out

    def writers(self) -> dict[str, str]:
        """Field name -> label of the process that writes it during the run
        (one per field: :meth:`check_fields` refuses two)."""
        return {f.name: p.entry.label for p in self.stages["processes"] for f in p.provides()}

    def check_fields(self) -> None:
        """Check, before the first step, that one process at most writes
        each field, and that every field a plugin requires is provided by an
        input, by an earlier process, or (for outputs) by any selected
        plugin."""
        writer: dict[str, str] = {}
        for p in self.stages["processes"]:
            for f in p.provides():
                if f.name in writer:
                    raise PluginError(
                        f"{p.entry.label} and {writer[f.name]} both provide field '{f.name}': "
                        f"one process writes each field; the other hands it a rate (a field "
                        f"declared with igm_core.Field(..., rate_of='{f.name}'))")
                writer[f.name] = p.entry.label
        providers = self.providers()
        available: set[str] = set()
        for stage in STAGES:
            for p in self.stages[stage]:
                for f in p.requires():
                    if f.name in available:
                        continue
                    if f.name in providers:
                        raise PluginError(
                            f"{p.entry.label} needs field '{f.name}', provided by "
                            f"{providers[f.name]}, which must come before it in "
                            f"{stage}: reorder the list")
                    raise PluginError(f"{p.entry.label} needs field '{f.name}', which no "
                                      "selected plugin provides")
                if stage != "outputs":
                    available.update(f.name for f in p.provides())
            if stage == "processes":
                available.update(providers)

    def call(self, plugin: LoadedPlugin, hook: str, **kwargs: Any) -> list[Any]:
        """Call one plugin's implementation of ``hook`` (and the observers'
        wrappers around it) with the plugin's own params; returns pluggy's
        list of non-None results (at most one)."""
        return plugin.callers[hook](params=plugin.params, **kwargs)

    def broadcast(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin and observer."""
        getattr(self.pm.hook, hook)(**kwargs)


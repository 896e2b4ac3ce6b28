"""MkDocs hook: the parameter reference, generated from the installed code.

At build time this hook

* adds the page ``reference/fields.md`` (every State field the installed
  plugins declare, with units and the plugins providing and requiring it);
* adds the page ``reference/parameters.md``, built from ``CoreParams`` and
  the ``Params`` dataclass of every plugin installed in the building
  environment (built-in and third-party alike, found through the entry-point
  groups ``igm.inputs``, ``igm.processes`` and ``igm.outputs``), so the
  reference cannot drift from the code;
* replaces a marker ``<!-- igm:params STAGE.NAME -->`` in any page with that
  plugin's parameter table (``<!-- igm:params core -->`` for the core keys);
* replaces ``<!-- igm:include PATH -->`` (PATH relative to the repository
  root, e.g. ``bench/RESULTS.md``) with that file's Markdown, headings one
  level down and relative links turned into plain paths (any other file, such
  as a shipped experiment, as a code block), or with a note when the file
  does not exist yet.

Each row gives the full key, its type, its default and the units and help
text taken from the comments next to the field in the source (a trailing
``# comment`` and/or the comment lines right above the field; a trailing
``(...)`` that looks like units goes to the units column).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import logging
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("mkdocs.plugins.igm_reference")

PAGE = "reference/parameters.md"
FIELDS_PAGE = "reference/fields.md"
MARKER = re.compile(r"<!--\s*igm:params\s+([\w.\-]+)\s*-->")
INCLUDE = re.compile(r"<!--\s*igm:include\s+([\w./\-]+)\s*-->")
_REL_LINK = re.compile(r"(!?)\[([^\]]*)\]\((?!https?://|#)([^)\s]+)\)")
_UNIT_BASES = {
    "m", "km", "km2", "km3", "m2", "m3", "cm", "mm", "yr", "a", "d", "s", "kg", "g", "W", "J",
    "K", "MPa", "kPa", "Pa", "degC", "dimensionless", "1", "ice", "eq", "eq.", "w.e.", "%",
}
_EXPONENT = re.compile(r"\^?\([^()]*\)|\^-?[\w/]+")


class Row(NamedTuple):
    """One parameter: full dotted key, type, default, units and help."""

    key: str
    type: str
    default: str
    units: str
    help: str


# -- reading the source comments -------------------------------------------


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment text written next to (or above) the field
    in ``cls``'s source; empty when the source is not available."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    classdef = ast.parse(source).body[0]
    out: dict[str, str] = {}
    for node in getattr(classdef, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        n = node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#") and n in by_line:
            above.insert(0, by_line[n])
            n -= 1
        trailing = [by_line[i] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                    if i in by_line]
        out[node.target.id] = " ".join(above + trailing).strip()
    return out


def is_units(text: str) -> bool:
    """Whether ``text`` reads as units: ``m``, ``m/yr``, ``MPa^-3 yr^-1``,
    ``MPa yr^(1/m) m^(-1/m)``, ``W m-2``, ``m ice eq./yr``."""
    tokens = text.split()
    if not 0 < len(tokens) <= 6:
        return False
    for token in tokens:
        for part in _EXPONENT.sub("", token).split("/"):
            if re.sub(r"-?\d+$", "", part) not in _UNIT_BASES and part != "1":
                return False
    return True


def split_units(text: str) -> tuple[str, str]:
    """Split a field's comment into (help, units): ``"end of the run (yr)"``
    gives ``("end of the run", "yr")``, ``"m; null = none"`` gives
    ``("null = none", "m")``; text without units is all help."""
    text = text.strip()
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                if is_units(text[i + 1:-1]):
                    return text[:i].rstrip(" ,;:"), text[i + 1:-1].strip()
                break
    head, _, rest = text.partition(";")
    if is_units(head):
        return rest.strip(), head.strip()
    return text, ""


# -- types and defaults ------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if tp is type(None):
        return "None"
    if tp is typing.Any:
        return "Any"
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        inner = [_type_name(a) for a in args if a is not type(None)]
        text = " | ".join(inner)
        return f"Optional[{text}]" if type(None) in args else text
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{args}]" if args else base
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" else value
    return repr(value)


def rows(cls: type, prefix: str = "") -> list[Row]:
    """The parameters of dataclass ``cls`` (nested dataclasses flattened to
    dotted keys under ``prefix``)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotation: fall back to its text
        hints = {}
    notes = _comments(cls)
    out: list[Row] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints.get(f.name, f.type)
        value = _default(f)
        nested = type(value) if dataclasses.is_dataclass(value) else tp
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            help_text, units = split_units(notes.get(f.name, ""))
            if help_text:
                out.append(Row(key, nested.__name__, "(group)", units, help_text))
            out.extend(rows(nested, key + "."))
            continue
        help_text, units = split_units(notes.get(f.name, ""))
        out.append(Row(key, _type_name(tp), _show(value), units, help_text))
    return out


# -- Markdown ------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(cls: type, prefix: str) -> str:
    """A Markdown table of ``cls``'s parameters, keys under ``prefix``."""
    lines = ["| key | type | default | units | description |", "|---|---|---|---|---|"]
    for r in rows(cls, prefix):
        lines.append(f"| {_code(r.key)} | {_cell(r.type)} | {_code(r.default)} | "
                     f"{_cell(r.units)} | {_cell(r.help)} |")
    if len(lines) == 2:
        return "This plugin has no parameters."
    return "\n".join(lines)


def anchor(target: str) -> str:
    """The heading id of ``target`` (``processes.thk`` -> ``processes-thk``)."""
    return target.replace(".", "-").replace("_", "-")


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ").replace("``", "`")


def _targets() -> dict[str, tuple[type, str, str]]:
    """``core`` and ``STAGE.NAME`` -> (Params class, summary, provenance)."""
    from igm_core import __version__
    from igm_core.config import CoreParams
    from igm_core.plugins import discover

    out: dict[str, tuple[type, str, str]] = {
        "core": (CoreParams, "Keys of the kernel itself (`core.*`).", f"igm-core {__version__}")
    }
    for stage, entries in discover().items():
        for name, entry in entries.items():
            module = entry.load()
            provenance = f"{entry.distribution} {entry.version}, `{entry.value}`"
            out[f"{stage}.{name}"] = (module.Params, _first_line(module), provenance)
    return out


def reference_page() -> str:
    """The Markdown of ``reference/parameters.md``."""
    targets = _targets()
    parts = [
        "# Parameter reference",
        "",
        "Generated when this site was built, from `igm_core.config.CoreParams` and the "
        "`Params` dataclass of every plugin installed in the building environment "
        "(a plugin you install appears here when you build the site yourself). "
        "Set any key in an experiment file or on the command line, e.g. "
        "`processes.time.end=2050`.",
        "",
    ]
    current_stage = None
    for target, (cls, summary, provenance) in targets.items():
        stage = target.split(".")[0]
        if stage != current_stage and stage != "core":
            parts += [f"## {stage.capitalize()} {{ #{stage} }}", ""]
        current_stage = stage
        level = "##" if target == "core" else "###"
        parts += [f"{level} {target} {{ #{anchor(target)} }}", ""]
        if summary:
            parts += [summary, ""]
        parts += [f"*From {provenance}.*", "", table(cls, f"{target}."), ""]
    return "\n".join(parts)


def _declared(module: Any, what: str) -> list:
    """The Field records a plugin module declares in ``requires`` or
    ``provides`` (a function of params is called with default Params)."""
    from igm_core.state import KNOWN_FIELDS, Field

    value = getattr(module, what, ())
    if callable(value):
        value = value(module.Params())
    if isinstance(value, (str, Field)):
        value = (value,)
    return [v if isinstance(v, Field) else KNOWN_FIELDS.get(v, Field(v, "1", v))
            for v in value or ()]


def fields_page() -> str:
    """The Markdown of ``reference/fields.md``: every State field the
    installed plugins declare, with units, long name, shape, and the plugins
    that provide and require it."""
    from igm_core.plugins import SINGULAR, discover
    from igm_core.state import KNOWN_FIELDS

    records = dict(KNOWN_FIELDS)
    providers: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    for stage, entries in discover().items():
        for name, entry in entries.items():
            module = entry.load()
            label = f"{SINGULAR[stage]} `{name}`"
            for f in _declared(module, "provides"):
                records.setdefault(f.name, f)
                providers.setdefault(f.name, []).append(label)
            for f in _declared(module, "requires"):
                records.setdefault(f.name, f)
                readers.setdefault(f.name, []).append(label)
    lines = [
        "# State fields",
        "",
        "Generated when this site was built from `igm_core.state.KNOWN_FIELDS` and the "
        "`provides` and `requires` declarations of every installed plugin. Outputs write "
        "these units (UDUNITS spelling, which cf-units and every CF tool read: `m yr-1`; "
        "`a` would be the are, 100 m2), CF standard names and long names into their files. "
        "Dimensions: `(y, x)` fields are `(ny, nx)`, `(z, y, x)` fields are on the ice-flow "
        "levels.",
        "",
        "| field | units | long name | dims | provided by | required by |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(records, key=str.lower):
        f = records[name]
        lines.append(f"| `{name}` | {_cell(f.units)} | {_cell(f.long_name)} | "
                     f"({', '.join(f.dims)}) | {', '.join(providers.get(name, [])) or '-'} | "
                     f"{', '.join(readers.get(name, [])) or '-'} |")
    return "\n".join(lines) + "\n"


def params_section(target: str) -> str:
    """The table that replaces ``<!-- igm:params TARGET -->``."""
    targets = _targets()
    if target not in targets:
        raise KeyError(target)
    cls, _, provenance = targets[target]
    return f"*From {provenance}.*\n\n" + table(cls, f"{target}.")


# -- MkDocs events ---------------------------------------------------------------


def on_files(files, config):
    """Add the generated parameter and field references to the site."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=reference_page()))
    files.append(File.generated(config, FIELDS_PAGE, content=fields_page()))
    return files


def on_page_markdown(markdown, page, config, files):
    """Expand ``<!-- igm:params TARGET -->`` markers."""

    def expand(match: re.Match) -> str:
        try:
            return params_section(match[1])
        except KeyError:
            log.warning("%s: no installed plugin '%s' for its igm:params marker",
                        page.file.src_uri, match[1])
            return f"!!! warning\n    Plugin `{match[1]}` is not installed here.\n"

    root = Path(config["config_file_path"]).parent if config else Path.cwd()
    return INCLUDE.sub(lambda m: included(root, m[1]), MARKER.sub(expand, markdown))


def included(root: Path, rel: str) -> str:
    """The Markdown of ``root/rel`` for an include marker: headings one level
    down, relative links and images replaced by their repository path."""
    path = root / rel
    if not path.is_file():
        return f"!!! note\n    `{rel}` does not exist yet in this checkout.\n"
    if path.suffix != ".md":
        lang = {".yaml": "yaml", ".yml": "yaml", ".py": "python", ".toml": "toml"}.get(
            path.suffix, "text")
        return f"```{lang} title=\"{rel}\"\n{path.read_text().rstrip()}\n```\n"
    folder = Path(rel).parent.as_posix()

    def plain(match: re.Match) -> str:
        target = f"{folder}/{match[3]}" if folder not in ("", ".") else match[3]
        return f"{match[2]} (`{target}` in the repository)"

    text = _REL_LINK.sub(plain, path.read_text())
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)

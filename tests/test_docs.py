"""The documentation site: its commands and YAML work as written, and the
generated parameter reference covers every installed plugin.

Every ``yaml``, ``bash`` and ``python`` block of a page under ``docs/``
carries a mark on the line above it, which says how it is exercised here:

``<!-- test: compose [OVERRIDE ...] -->``
    a YAML experiment file: composed with Hydra's compose API as
    ``+experiment=...`` (plus the overrides), and each selected plugin's
    ``Params`` built from it, so a renamed key fails here.
``<!-- test: file PATH -->``
    a file the page tells the reader to write: written to PATH in the page's
    scratch folder before its commands run (composed too when PATH is
    ``experiment/NAME.yaml``).
``<!-- test: run -->``
    a short command block (or Python script): run in the page's scratch
    folder, in page order, in the default suite; it must exit 0.
``<!-- test: slow -->``
    a long one (a full glacier run): run with the page's other blocks in
    page order in the ``slow`` suite.
``<!-- test: skip REASON -->``
    not runnable here (a SLURM cluster, a GPU, a package index); the reason
    is required.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOK = DOCS / "hooks" / "igm_reference.py"
CHECKED_LANGS = {"yaml", "yml", "bash", "sh", "shell", "console", "python", "py"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
KINDS = {"compose", "file", "run", "slow", "skip"}
MARK = re.compile(r"^\s*<!--\s*test:\s*(\w+)(.*?)-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass
class Block:
    """A fenced code block of a page and its test mark."""

    page: Path
    line: int
    lang: str
    text: str
    kind: str | None
    args: list[str]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match[1], match[2], match[3].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = MARK.match(prev)
        kind = mark[1] if mark else None
        text = mark[2].strip() if mark else ""
        args = ([text] if text else []) if kind == "skip" else shlex.split(text)
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", kind, args))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.md"))
BLOCKS = [b for page in PAGES for b in _blocks(page) if b.lang in CHECKED_LANGS]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


def _load_hook():
    spec = importlib.util.spec_from_file_location("igm_docs_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- marks -------------------------------------------------------------------


def test_pages_have_code_blocks_to_check() -> None:
    assert len(BLOCKS) >= 10, f"only {len(BLOCKS)} checked blocks found under docs/"


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_every_block_is_marked(block: Block) -> None:
    assert block.kind in KINDS, (
        f"{block.where}: {block.lang} block without a '<!-- test: KIND -->' mark on the line "
        f"above (KIND one of {', '.join(sorted(KINDS))})")
    if block.kind == "skip":
        assert block.args, f"{block.where}: 'test: skip' needs a reason"
    if block.kind == "file":
        assert len(block.args) == 1, f"{block.where}: 'test: file' takes one PATH"
    if block.kind == "compose":
        assert block.lang in {"yaml", "yml"}, f"{block.where}: only YAML blocks compose"


# -- YAML composes against the installed schemas --------------------------------


def _experiment_blocks() -> list[Block]:
    out = []
    for b in BLOCKS:
        if b.kind == "compose" or (b.kind == "file" and b.args and
                                   re.fullmatch(r"experiment/\w+\.ya?ml", b.args[0])):
            out.append(b)
    return out


EXPERIMENTS = _experiment_blocks()


@pytest.fixture(scope="module")
def installed_plugins():
    """Installed plugins, with their Params registered in Hydra's ConfigStore
    exactly as ``igm_run`` does."""
    from igm_core.app import register_configs
    from igm_core.plugins import discover

    found = discover()
    register_configs(found)
    return found


@pytest.mark.parametrize("block", EXPERIMENTS, ids=_ids(EXPERIMENTS))
def test_yaml_composes(block: Block, installed_plugins, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from igm_core.app import selection_from
    from igm_core.config import CoreParams

    if block.kind == "file":
        name, overrides = Path(block.args[0]).stem, []
    else:
        name, overrides = "doc_block", block.args
    for other in _blocks(block.page):  # files the page wrote before (e.g. a base experiment)
        if other.kind == "file":
            _execute(other, tmp_path, timeout=0)
    (tmp_path / "experiment").mkdir(exist_ok=True)
    (tmp_path / "experiment" / f"{name}.yaml").write_text(block.text)
    monkeypatch.chdir(tmp_path)
    try:
        with initialize_config_module("igm_core.conf", version_base="1.3"):
            cfg = compose("config", overrides=[f"+experiment={name}", *overrides])
        selection = selection_from(cfg, installed_plugins)
        assert isinstance(OmegaConf.to_object(cfg.core), CoreParams)
    except Exception as exc:
        pytest.fail(f"{block.where}: does not compose: {type(exc).__name__}: {exc}")
    assert selection["processes"], f"{block.where}: selects no process"


# -- commands run as written ----------------------------------------------------


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def _execute(block: Block, cwd: Path, timeout: float) -> None:
    if block.kind == "file":
        path = cwd / block.args[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)
        return
    if block.lang in SHELL_LANGS:
        cmd = ["bash", "-euo", "pipefail", "-c", block.text]
    else:
        cmd = [sys.executable, "-c", block.text]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), text=True, capture_output=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f"{block.where}: exited {proc.returncode}\n{block.text}\n--- stdout\n"
        f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def _pages_with(kind: str) -> list[Path]:
    return sorted({b.page for b in BLOCKS if b.kind == kind})


def _run_page(page: Path, kinds: set[str], cwd: Path, timeout: float) -> None:
    for block in _blocks(page):
        if block.kind == "file" or (block.lang in CHECKED_LANGS and block.kind in kinds):
            _execute(block, cwd, timeout)


FAST_PAGES = _pages_with("run")
SLOW_PAGES = _pages_with("slow")


@pytest.mark.parametrize("page", FAST_PAGES, ids=[p.name for p in FAST_PAGES])
def test_short_commands_run(page: Path, tmp_path: Path) -> None:
    _run_page(page, {"file", "run"}, tmp_path, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES, ids=[p.name for p in SLOW_PAGES])
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    _run_page(page, {"file", "run", "slow"}, tmp_path, timeout=1800)


# -- the generated parameter reference ------------------------------------------


def test_reference_lists_every_installed_parameter(installed_plugins) -> None:
    import dataclasses

    hook = _load_hook()
    page = hook.reference_page()
    for stage, entries in installed_plugins.items():
        for name, entry in entries.items():
            assert f"### {stage}.{name} {{ #{hook.anchor(stage + '.' + name)} }}" in page
            for row in hook.rows(entry.load().Params, f"{stage}.{name}."):
                assert f"| `{row.key}` |" in page
            top = [f.name for f in dataclasses.fields(entry.load().Params)]
            assert all(f"`{stage}.{name}.{key}" in page for key in top)
    assert "| `core.hardware.visible_gpus` |" in page


def test_reference_takes_units_and_help_from_the_comments() -> None:
    from igm_core.config import CoreParams

    hook = _load_hook()
    rows = {r.key: r for r in hook.rows(CoreParams, "core.")}
    assert rows["core.objective_target"].units == "km3"
    assert rows["core.objective_target"].default == "0.0"
    assert rows["core.logging"].type == "bool"
    assert rows["core.logging"].default == "true"
    assert "round-robin" in rows["core.hardware.visible_gpus"].help
    assert hook.split_units("end of the simulation (yr)") == ("end of the simulation", "yr")
    assert hook.split_units("DEBUG, INFO (or a number)")[1] == ""


def test_params_marker_expands_and_unknown_marker_warns(caplog) -> None:
    hook = _load_hook()

    class _File:
        src_uri = "page.md"

    class _Page:
        file = _File()

    text = hook.on_page_markdown("<!-- igm:params core -->\n<!-- igm:params processes.nope -->",
                                 _Page(), None, None)
    assert "| `core.folder_data` | str | `data` |" in text
    assert "`processes.nope` is not installed" in text
    assert "no installed plugin 'processes.nope'" in caplog.text


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="docs extra not installed (pip install -e .[docs])")
    pytest.importorskip("material", reason="docs extra not installed (pip install -e .[docs])")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, env=_env(), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = tmp_path / "site"
    html = (site / "reference" / "parameters" / "index.html").read_text()
    assert "processes.time.start" in html
    # readable offline: MathJax and the fonts come with the site, no page loads a CDN
    assert (site / "javascripts" / "mathjax" / "MathJax.js").is_file()
    assert (site / "javascripts" / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "cdn.jsdelivr" not in text and "mathjax@" not in text, page
    iceflow = (site / "modules" / "iceflow" / "index.html").read_text()
    assert 'class="arithmatex"' in iceflow and "javascripts/mathjax/MathJax.js" in iceflow
    landing = (site / "index.html").read_text()
    assert 'src="img/hintereisferner-2000.png"' in landing
    assert (site / "img" / "hintereisferner-2000.png").stat().st_size > 10_000


def test_include_marker_demotes_headings_and_unlinks_relative_paths(tmp_path: Path) -> None:
    hook = _load_hook()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "RESULTS.md").write_text(
        "# Benchmarks\n\n![speed](speed.png) and [site](https://example.org)\n")
    text = hook.included(tmp_path, "bench/RESULTS.md")
    assert text.startswith("## Benchmarks")
    assert "speed (`bench/speed.png` in the repository)" in text
    assert "[site](https://example.org)" in text
    assert "does not exist yet" in hook.included(tmp_path, "bench/NONE.md")


def test_configuration_page_shows_the_shipped_defaults_list() -> None:
    import yaml

    shipped = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["defaults"]
    page = (DOCS / "configuration.md").read_text()
    shown = page.split("```text\ndefaults:\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load("defaults:\n" + shown)["defaults"] == shipped


def test_fields_page_lists_every_declared_field(installed_plugins) -> None:
    hook = _load_hook()
    page = hook.fields_page()
    for entries in installed_plugins.values():
        for entry in entries.values():
            module = entry.load()
            for what in ("provides", "requires"):
                for f in hook._declared(module, what):
                    assert f"| `{f.name}` | {hook._cell(f.units)} |" in page
    assert "| `thk` | m | ice thickness | (y, x) |" in page


def test_include_marker_shows_other_files_as_code(tmp_path: Path) -> None:
    hook = _load_hook()
    (tmp_path / "exp.yaml").write_text("a: 1\n")
    assert hook.included(tmp_path, "exp.yaml") == '```yaml title="exp.yaml"\na: 1\n```\n'

"""Shared test helpers: run the installed ``igm_run``, tiny inputs, fake
plugin distributions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["igm_core.testing"]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def igm_run_exe() -> str:
    """The installed console script (next to the running interpreter)."""
    exe = Path(sys.executable).with_name("igm_run")
    return str(exe) if exe.exists() else (shutil.which("igm_run") or "igm_run")


def run_igm(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``igm_run ARGS`` in ``cwd``; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([igm_run_exe(), *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def hef_state(k: int):
    """The shipped Hintereisferner as a State at 50 k m cells (every k-th
    node of the 50 m grid)."""
    import importlib.resources as res

    import netCDF4

    from igm_core.testing import make_state

    path = res.files("igm_plugins.data") / "hintereisferner" / "input.nc"
    with netCDF4.Dataset(str(path)) as ds:
        thk = np.asarray(ds["thk"][:], "float32")[::k, ::k]
        topg = np.asarray(ds["topg"][:], "float32")[::k, ::k]
    return make_state(nx=thk.shape[1], ny=thk.shape[0], dx=50.0 * k, thk=thk, topg=topg)


def write_tiny_input(path: Path, nx: int = 14, ny: int = 12, dx: float = 100.0) -> Path:
    """A small netCDF input: an ice cap (max 120 m) on a bed sloping from
    2600 m to 2900 m, coordinates x, y (m), fields topg, thk, usurf (m)."""
    import netCDF4

    x = 1000.0 + dx * np.arange(nx)
    y = 5000.0 + dx * np.arange(ny)
    xx, yy = np.meshgrid(x, y)
    topg = 2600.0 + 300.0 * (xx - x[0]) / (x[-1] - x[0])
    r2 = ((xx - x.mean()) ** 2 + (yy - y.mean()) ** 2) / (0.35 * nx * dx) ** 2
    thk = np.where(r2 < 1.0, 120.0 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)), 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", nx)
        ds.createDimension("y", ny)
        for name, values in (("x", x), ("y", y)):
            var = ds.createVariable(name, "f8", (name,))
            var[:] = values
            var.units = "m"
        for name, values in (("topg", topg), ("thk", thk), ("usurf", topg + thk)):
            var = ds.createVariable(name, "f4", ("y", "x"))
            var[:] = values
            var.units = "m"
    return path


def compose(cls: type, values: dict) -> object:
    """Build the dataclass ``cls`` from nested ``values`` the way Hydra
    builds a plugin's Params (merge onto the schema, then to_object, which
    runs ``__post_init__``)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))


def assert_choice_refused(cls: type, key: str, value: str, allowed: str) -> None:
    """Composing ``cls`` with ``key=value`` (a dotted key) fails as Hydra
    reports it: the bad value and the allowed choices, ``[a, b, c]``."""
    import re

    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    values: dict = {}
    target = values
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
    with pytest.raises(ValidationError, match=re.escape(
            f"Invalid value '{value}', expected one of {allowed}")):
        OmegaConf.merge(OmegaConf.structured(cls), values)


def write_fake_dist(site: Path, dist: str, version: str, entry_points: dict[str, dict[str, str]],
                    modules: dict[str, str]) -> Path:
    """Make an installed-looking distribution under ``site`` (a folder put on
    PYTHONPATH): a ``*.dist-info`` with METADATA and entry_points.txt, plus
    module files (dotted name -> source)."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in eps.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for dotted, source in modules.items():
        path = site.joinpath(*dotted.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(site).parents:
            if str(parent) != ".":
                (site / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    return site


# The default Hintereisferner experiment (every plugin, the network alone
# retrained at every step instead of corrected by solves) on a 200 m grid,
# 1900-1930, saves every 2 years, one TensorFlow thread, checkpoints every 5
# years kept: for runs stopped and continued, compared with the run in one
# piece
HEF = ["+experiment=hintereisferner", "inputs.local.coarsening.ratio=4",
       "processes.time.end=1930", "processes.time.save=2",
       "processes.iceflow.emulator.solve_change=0", "processes.iceflow.emulator.retrain_freq=1",
       "processes.particles.frequency_seeding=5",
       "core.progress=off", "core.print_params=false", "core.print_comp=false",
       "core.hardware.threads=1", "core.checkpoint.every_years=5", "core.checkpoint.keep=10"]


@pytest.fixture(scope="session")
def hef_reference(tmp_path_factory) -> Path:
    """The folder of the :data:`HEF` run in one piece."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    proc = run_igm([*HEF, f"hydra.run.dir={folder}"], folder.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder


def assert_same_netcdf(a: Path, b: Path) -> None:
    """Two netCDF files hold the same variables with the same values, bit
    for bit."""
    import netCDF4

    with netCDF4.Dataset(a) as da, netCDF4.Dataset(b) as db:
        assert sorted(da.variables) == sorted(db.variables)
        for name, var in da.variables.items():
            x, y = np.asarray(var[...]), np.asarray(db[name][...])
            assert x.shape == y.shape, (name, x.shape, y.shape)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (
                f"{a.name}:{name} max abs difference "
                f"{np.nanmax(np.abs(x.astype(float) - y.astype(float)))}")


def assert_same_outputs(a: Path, b: Path, saves: int = 16) -> None:
    """Run folders ``a`` and ``b`` hold the same output.nc, output_ts.nc and
    particle files (``saves`` of them), bit for bit, and the same maps."""
    assert_same_netcdf(a / "output.nc", b / "output.nc")
    assert_same_netcdf(a / "output_ts.nc", b / "output_ts.nc")
    names = sorted(p.name for p in (a / "particles").glob("*.nc"))
    assert names == sorted(p.name for p in (b / "particles").glob("*.nc"))
    assert len(names) == saves
    for name in names:
        assert_same_netcdf(a / "particles" / name, b / "particles" / name)
    frames = sorted(p.name for p in (b / "plot2d").glob("*.png"))
    assert frames == sorted(p.name for p in (a / "plot2d").glob("*.png"))
    assert len(frames) == saves


@pytest.fixture
def tiny_input(tmp_path: Path) -> Path:
    """Path of a small netCDF input in ``tmp_path``."""
    return write_tiny_input(tmp_path / "input.nc")


@pytest.fixture
def experiment_dir(tmp_path: Path):
    """Factory: write ``experiment/NAME.yaml`` under tmp_path (a launch folder)
    holding a tiny input.nc, and return the folder."""
    write_tiny_input(tmp_path / "input.nc")

    def make(name: str, text: str) -> Path:
        exp = tmp_path / "experiment"
        exp.mkdir(exist_ok=True)
        (exp / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
        return tmp_path

    return make

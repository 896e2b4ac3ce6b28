"""GeoTIFF: inputs.local reads rasters (a DEM and one raster per field), the
``tif`` output writes north-up rasters in the input's projection, and the
two round-trip to the same State."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rioxarray
from conftest import SHARED, run_igm

from igm_core.errors import DataError
from igm_core.state import State
from igm_core.testing import load_plugin, run_context
from igm_plugins.inputs import local
from igm_plugins.outputs import tif

HEF_INPUT = SHARED / "data" / "hintereisferner" / "input.nc"


def load(tmp_path: Path, **params) -> State:
    plugins, plugin = load_plugin(local, "inputs", local.Params(**params))
    state = State()
    plugins.call(plugin, "igm_input_initialize", state=state, run=run_context(tmp_path))
    return state


def test_rasters_written_by_tif_read_back_as_the_same_state(tmp_path):
    source = load(tmp_path, filename=str(HEF_INPUT))
    for name in ("usurf", "thk"):
        tif.write_raster(tmp_path / f"{name}.tif", source.get(name).numpy(), source, name)
    with rioxarray.open_rasterio(tmp_path / "thk.tif") as raster:
        assert raster.rio.crs.to_epsg() == 32632
        assert raster["y"].values[0] > raster["y"].values[-1]  # north up
        assert raster.attrs["units"] == "m"
    state = load(tmp_path, filename="usurf.tif", rasters={"thk": "thk.tif"})
    np.testing.assert_array_equal(state.x, source.x)
    np.testing.assert_array_equal(state.y, source.y)
    for name in ("usurf", "thk", "topg"):
        np.testing.assert_allclose(state.get(name).numpy(), source.get(name).numpy(),
                                   atol=1e-3, err_msg=name)
    assert "32632" in state.grid.crs


def test_a_dem_alone_is_the_surface_without_ice(tmp_path):
    source = load(tmp_path, filename=str(HEF_INPUT))
    tif.write_raster(tmp_path / "dem.tif", source.usurf.numpy(), source, "usurf")
    state = load(tmp_path, filename="dem.tif", coarsening=local.Coarsening(ratio=2))
    assert state.grid.shape == (90, 110) and state.dx == 100.0
    assert float(np.max(state.thk.numpy())) == 0.0
    np.testing.assert_array_equal(state.topg.numpy(), state.usurf.numpy())


def write_tif(path: Path, values: np.ndarray, x, y, crs="EPSG:32632") -> Path:
    import xarray as xr

    raster = xr.DataArray(values, dims=("band", "y", "x") if values.ndim == 3 else ("y", "x"),
                          coords={"y": y, "x": x})
    raster.rio.write_crs(crs).rio.to_raster(path)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("other grid", "rasters.thk is not on the grid of"),
    ("two bands", "2 bands; give one single-band GeoTIFF per field"),
    ("degrees", "the grid is in longitude and latitude"),
    ("missing", "inputs.local.rasters.thk: GeoTIFF 'absent.tif' not found in"),
])
def test_bad_rasters_give_one_line(tmp_path, case, message):
    x = 1000.0 + 50.0 * np.arange(8)
    y = 2000.0 + 50.0 * np.arange(6)[::-1]
    dem = np.full((6, 8), 3000.0, "float32")
    write_tif(tmp_path / "dem.tif", dem, x, y)
    params = {"filename": "dem.tif", "rasters": {"thk": "thk.tif"}}
    if case == "other grid":
        write_tif(tmp_path / "thk.tif", np.zeros((6, 8), "float32"), x + 50.0, y)
    elif case == "two bands":
        write_tif(tmp_path / "thk.tif", np.zeros((2, 6, 8), "float32"), x, y)
    elif case == "degrees":
        write_tif(tmp_path / "dem.tif", dem, np.linspace(10, 10.007, 8),
                  np.linspace(46.005, 46, 6), crs="EPSG:4326")
        params["rasters"] = {}
    else:
        params["rasters"] = {"thk": "absent.tif"}
    with pytest.raises(DataError) as info:
        load(tmp_path, **params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_tif_output_writes_rasters_at_each_save(tmp_path):
    run = tmp_path / "run"
    proc = run_igm(["+experiment=hintereisferner", "inputs.local.coarsening.ratio=4",
                    "processes.time.end=1904", "processes.time.save=2", "core.progress=off",
                    "outputs=[local,tif]", "outputs.tif.vars_to_save=[thk,velsurf_mag]",
                    f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in (run / "tif").iterdir())
    assert names == sorted(f"{v}_{t}.tif" for v in ("thk", "velsurf_mag")
                           for t in (1900, 1902, 1904))
    with netCDF4.Dataset(run / "output.nc") as ds:
        thk_1904 = np.asarray(ds["thk"][-1])
    with rioxarray.open_rasterio(run / "tif" / "thk_1904.tif") as raster:
        assert raster.rio.crs.to_epsg() == 32632
        np.testing.assert_array_equal(raster.squeeze("band").values[::-1], thk_1904)


def test_an_unknown_field_lists_the_fields(tmp_path):
    proc = run_igm(["+experiment=hintereisferner", "inputs.local.coarsening.ratio=4",
                    "processes.time.end=1901", "outputs=[tif]",
                    "outputs.tif.vars_to_save=[speed]", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode != 0
    assert "igm_run: error: outputs.tif.vars_to_save: no 2-D field 'speed' in this run; " \
           "available:" in proc.stderr

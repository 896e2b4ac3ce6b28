"""inputs.local: netCDF round trip, derived geometry, crop, coarsening, mask,
and one clear error line for each bad input."""

from __future__ import annotations

import re
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from conftest import compose

from igm_core.errors import ConfigError, DataError
from igm_core.state import State
from igm_core.testing import load_plugin, run_context
from igm_plugins.inputs import local


def write_nc(path: Path, x, y, dims=("y", "x"), **fields) -> Path:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", len(x))
        ds.createDimension("y", len(y))
        for name, values in (("x", x), ("y", y)):
            ds.createVariable(name, "f8", (name,))[:] = values
        for name, values in fields.items():
            var = ds.createVariable(name, "f4", dims)
            var[:] = values
            var.units = "m" if name in ("topg", "thk", "usurf") else "K"
            var.long_name = f"the {name}"
    return path


def grid(nx=8, ny=6, dx=50.0):
    x = 1000.0 + dx * np.arange(nx)
    y = 2000.0 + dx * np.arange(ny)
    xx, yy = np.meshgrid(x, y)
    return x, y, xx, yy


def load_state(tmp_path: Path, **params) -> State:
    plugins, plugin = load_plugin(local, "inputs", local.Params(**params))
    state = State()
    plugins.call(plugin, "igm_input_initialize", state=state, run=run_context(tmp_path))
    return state


def test_round_trip_with_derived_fields_and_extra_variable(tmp_path):
    x, y, xx, yy = grid()
    topg = 3000.0 + 0.1 * xx - 0.2 * yy
    thk = np.where(xx > 1100, 40.0, 0.0)
    temp = 250.0 + 0.0 * xx
    write_nc(tmp_path / "input.nc", x, y, topg=topg, thk=thk, temperature=temp)
    state = load_state(tmp_path)
    np.testing.assert_array_equal(state.x, x)
    np.testing.assert_array_equal(state.y, y)
    assert state.dx == 50.0
    np.testing.assert_allclose(state.topg.numpy(), topg, rtol=1e-7)
    np.testing.assert_allclose(state.usurf.numpy(), topg + thk, rtol=1e-7)
    assert state.thk.dtype.name == "float32"
    np.testing.assert_array_equal(state.temperature.numpy(), temp)
    assert state.meta("temperature").units == "K"
    assert state.meta("temperature").long_name == "the temperature"


def test_descending_y_and_transposed_field_are_flipped(tmp_path):
    x, y, xx, yy = grid()
    topg = 3000.0 + xx + 10 * yy
    write_nc(tmp_path / "input.nc", x, y[::-1], topg=topg[::-1])
    write_nc(tmp_path / "t.nc", x, y, dims=("x", "y"), topg=topg.T)
    for name in ("input.nc", "t.nc"):
        state = load_state(tmp_path, filename=name)
        np.testing.assert_array_equal(state.y, y)
        np.testing.assert_allclose(state.topg.numpy(), topg, rtol=1e-7)
        np.testing.assert_array_equal(state.thk.numpy(), 0.0)


def test_topg_derived_from_usurf_and_thk(tmp_path):
    x, y, xx, _ = grid()
    write_nc(tmp_path / "input.nc", x, y, usurf=3000.0 + xx, thk=10.0 + 0 * xx)
    state = load_state(tmp_path)
    np.testing.assert_allclose(state.topg.numpy(), 2990.0 + xx, rtol=1e-7)


def test_crop_then_coarsen_trim_and_extend(tmp_path):
    x, y, xx, yy = grid(nx=10, ny=8)
    topg = 3000.0 + xx + 2 * yy
    thk = 1.0 + 0.0 * xx
    write_nc(tmp_path / "input.nc", x, y, topg=topg, thk=thk)
    # crop keeps x in [1100, 1400] (7 cells), y in [2050, 2300] (6 cells)
    crop = local.Crop(xmin=1100.0, xmax=1400.0, ymin=2050.0, ymax=2300.0)
    state = load_state(tmp_path, crop=crop)
    np.testing.assert_array_equal(state.x, x[2:9])
    np.testing.assert_array_equal(state.y, y[1:7])
    np.testing.assert_allclose(state.topg.numpy(), topg[1:7, 2:9], rtol=1e-7)
    state = load_state(tmp_path, crop=crop, coarsening=local.Coarsening(ratio=2))
    np.testing.assert_allclose(state.x, [1125.0, 1225.0, 1325.0])  # 7 -> 3 blocks (trim)
    np.testing.assert_allclose(state.y, [2075.0, 2175.0, 2275.0])
    expect = topg[1:7, 2:8].reshape(3, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(state.topg.numpy(), expect, rtol=1e-7)
    np.testing.assert_allclose(state.usurf.numpy(), expect + 1.0, rtol=1e-7)
    state = load_state(tmp_path, crop=crop, coarsening=local.Coarsening(2, local.Boundary.extend))
    np.testing.assert_allclose(state.x, [1125.0, 1225.0, 1325.0, 1425.0])
    assert state.topg.shape == (3, 4)
    np.testing.assert_allclose(state.topg.numpy()[:, -1], topg[[1, 3, 5], 8] + 50.0, rtol=1e-7)


def test_icemask_include_removes_ice_outside_the_mask(tmp_path):
    x, y, xx, _ = grid()
    mask = (xx < 1200).astype(float)
    write_nc(tmp_path / "input.nc", x, y, topg=3000.0 + 0 * xx, thk=50.0 + 0 * xx, icemask=mask)
    state = load_state(tmp_path, icemask=local.IceMask(include=True))
    np.testing.assert_array_equal(state.thk.numpy(), 50.0 * mask)
    np.testing.assert_array_equal(state.usurf.numpy(), 3000.0 + 50.0 * mask)


def test_the_shipped_glacier_loads(tmp_path):
    state = load_state(tmp_path, filename="pkg://igm_plugins.data/hintereisferner/input.nc")
    assert state.grid.shape == (180, 220)
    assert state.dx == pytest.approx(50.0)
    assert 0.5 < state.ice_volume() < 0.7
    assert np.all(state.thk.numpy() >= 0)


@pytest.mark.parametrize("case, error, message", [
    ("missing file", DataError, "inputs.local.filename: input file 'nope.nc' not found"),
    ("not netcdf", DataError, "bad.nc: cannot be opened as netCDF"),
    ("missing topg", DataError, "input.nc: missing variable 'topg'"),
    ("missing x", DataError, "input.nc: missing coordinate variable 'x'"),
    ("nan", DataError, "input.nc: variable 'thk' has 1 NaN or missing values"),
    ("non-uniform", DataError, "input.nc: grid coordinate 'x' is not uniform"),
    # the file's own grid is checked before coarsening rebuilds uniform coordinates
    ("non-uniform, coarsened", DataError, "input.nc: grid coordinate 'x' is not uniform "
                                          "(spacing from 50 to 57 m)"),
    ("duplicated x, coarsened", DataError, "input.nc: grid coordinate 'x' must be strictly "
                                           "ascending"),
    ("negative thk", DataError, "input.nc: variable 'thk' is negative in 48 cells (min -10 m); "
                                "fix the file, or set inputs.local.negative_thk=clamp"),
    ("sign-flipped ice", DataError, "input.nc: variable 'thk' is negative in 24 cells"),
    ("negative usurf - topg", DataError, "input.nc: thk = usurf - topg is negative in 48 cells "
                                         "(min -5 m)"),
    ("thk over time", DataError, "input.nc: variable 'thk' is on (time, y, x) with 3 time; "
                                 "give one 2-D (y, x) field"),
    ("crop outside", ConfigError, "inputs.local.crop.xmax=9999 is outside the domain of"),
    ("mask missing", DataError, "input.nc: missing variable 'icemask', needed by"),
])
def test_bad_inputs_give_one_clear_line(tmp_path, case, error, message):
    x, y, xx, _ = grid()
    params = {}
    fields = {"topg": 3000.0 + 0 * xx, "thk": 10.0 + 0 * xx}
    if case == "missing file":
        params["filename"] = "nope.nc"
    elif case == "not netcdf":
        (tmp_path / "bad.nc").write_text("hello")
        params["filename"] = "bad.nc"
    elif case == "missing topg":
        del fields["topg"]
    elif case == "nan":
        fields["thk"][2, 3] = np.nan
    elif case == "non-uniform":
        x = x.copy()
        x[-1] += 7.0
    elif case == "non-uniform, coarsened":
        x = x.copy()
        x[-1] += 7.0
        params["coarsening"] = local.Coarsening(ratio=2)
    elif case == "duplicated x, coarsened":
        x = x.copy()
        x[3] = x[2]
        params["coarsening"] = local.Coarsening(ratio=2)
    elif case == "negative thk":
        fields["thk"] = -fields["thk"]
    elif case == "sign-flipped ice":
        fields["thk"] = np.where(xx > 1150, -10.0, 0.0)
    elif case == "negative usurf - topg":
        fields = {"topg": fields["topg"], "usurf": fields["topg"] - 5.0}
    elif case == "thk over time":
        fields["thk"] = np.stack([fields["thk"]] * 3)
    elif case == "crop outside":
        params["crop"] = local.Crop(xmax=9999.0)
    elif case == "mask missing":
        params["icemask"] = local.IceMask(include=True)
    if case == "thk over time":
        path = write_nc(tmp_path / "input.nc", x, y, topg=fields["topg"])
        with netCDF4.Dataset(path, "a") as ds:
            ds.createDimension("time", 3)
            ds.createVariable("thk", "f4", ("time", "y", "x"))[:] = fields["thk"]
    else:
        path = write_nc(tmp_path / "input.nc", x, y, **fields)
    if case == "missing x":
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("y", len(y))
            ds.createDimension("x", len(x))
            ds.createVariable("y", "f8", ("y",))[:] = y
            ds.createVariable("topg", "f4", ("y", "x"))[:] = fields["topg"]
    with pytest.raises(error) as info:
        load_state(tmp_path, **params)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_negative_thickness_clamped_on_request_with_a_warning(tmp_path, caplog):
    x, y, xx, _ = grid()
    write_nc(tmp_path / "input.nc", x, y, topg=3000.0 + 0 * xx, thk=np.where(xx > 1150, -3.0, 8.0))
    state = load_state(tmp_path, negative_thk=local.NegativeThickness.clamp)
    thk = state.thk.numpy()
    assert thk.min() == 0.0 and np.count_nonzero(thk) == 24  # 4 columns of 6 cells kept
    assert "variable 'thk' is negative in 24 cells (min -3 m): set to 0" in caplog.text


def test_a_single_time_is_read_as_the_field(tmp_path):
    x, y, xx, _ = grid()
    path = write_nc(tmp_path / "input.nc", x, y, topg=3000.0 + 0 * xx)
    with netCDF4.Dataset(path, "a") as ds:
        ds.createDimension("time", None)
        ds.createVariable("thk", "f4", ("time", "y", "x"))[0] = 20.0 + 0 * xx
        ds.createVariable("smb_series", "f4", ("time",))[:] = [1.0]
    state = load_state(tmp_path)
    assert state.thk.shape == (6, 8) and float(state.thk.numpy().max()) == 20.0
    assert "smb_series" not in state


@pytest.mark.parametrize(("values", "message"), [
    ({"coarsening": {"ratio": 0}}, "inputs.local.coarsening.ratio must be a positive integer"),
    ({"crop": {"ymin": 500.0, "ymax": 200.0}},
     r"inputs.local.crop.ymin \(500 m\) must be below inputs.local.crop.ymax \(200 m\)"),
])
def test_bad_parameters_are_refused_when_built(values, message):
    with pytest.raises(ConfigError, match=message):
        compose(local.Params, values)


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("coarsening.boundary", "wrap", "[trim, extend]"),
    ("negative_thk", "ignore", "[error, clamp]"),
])
def test_choices_list_the_allowed_values(key, value, allowed):
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    cfg = OmegaConf.structured(local.Params)
    with pytest.raises(ValidationError, match=re.escape(f"expected one of {allowed}")):
        OmegaConf.update(cfg, key, value)

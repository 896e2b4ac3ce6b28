"""Outputs every tool reads right: UDUNITS units and CF standard names on
every known field, a CF time coordinate, the input's map projection and
credits carried into the outputs, and the IOOS compliance checker (CF-1.8,
offline with its bundled standard-name table) finding nothing to say."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from cf_units import Unit
from conftest import SHARED, run_igm, write_tiny_input

from igm_core.errors import DataError
from igm_core.plugins import discover
from igm_core.state import KNOWN_FIELDS, Field
from igm_core.testing import load_plugin, run_context
from igm_plugins._netcdf import TIME, read_crs
from igm_plugins.inputs import local

HEF_INPUT = SHARED / "data" / "hintereisferner" / "input.nc"


@cache
def standard_names() -> dict[str, str]:
    """The CF standard-name table bundled with compliance-checker: name ->
    canonical units (aliases resolved)."""
    import compliance_checker

    text = (Path(compliance_checker.__file__).parent / "data" /
            "cf-standard-name-table.xml").read_text()
    table = dict(re.findall(r'<entry id="([^"]+)">\s*<canonical_units>([^<]*)<', text))
    for alias, target in re.findall(r'<alias id="([^"]+)">\s*<entry_id>([^<]+)<', text):
        table.setdefault(alias, table.get(target, ""))
    return table


def plugin_fields() -> list[Field]:
    """Every field the installed plugins declare, with the known ones."""
    found = dict(KNOWN_FIELDS)
    for entries in discover().values():
        for entry in entries.values():
            module = entry.load()
            for attr in ("provides", "requires"):
                value = getattr(module, attr, ())
                if callable(value):
                    value = value(module.Params())
                found.update({f.name: f for f in value if isinstance(f, Field)})
    return list(found.values())


@pytest.mark.parametrize("meta", [*plugin_fields(), TIME], ids=lambda f: f.name)
def test_units_are_udunits_and_standard_names_are_cf(meta):
    unit = Unit(meta.units)  # raises for what UDUNITS cannot parse
    assert "a-1" not in meta.units.split() and " a" not in f" {meta.units}", meta.units
    # UDUNITS has no fractional powers: "m(-1/3)" parses, as the product m * (-1/3)
    assert not re.search(r"[()/]", meta.units.split(" since ")[0]), meta.units
    if meta.standard_name:
        canonical = standard_names().get(meta.standard_name)
        assert canonical is not None, f"{meta.standard_name} is not a CF standard name"
        if not unit.is_time_reference():
            assert unit.is_convertible(Unit(canonical)), (meta.units, canonical)


def compliance_issues(path: Path, tmp_path: Path) -> list[str]:
    """What the IOOS compliance checker (CF-1.8) reports for ``path``."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.name}.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.8"], 0, "normal",
                                  output_filename=str(report), output_format="json")
    result = json.loads(report.read_text())["cf:1.8"]
    issues = [f"{item['name']}: {'; '.join(item['msgs'])}" for item in result["all_priorities"]
              if item["value"][0] < item["value"][1] or item["msgs"]]
    assert issues or result["scored_points"] == result["possible_points"]
    return issues


def test_every_output_file_passes_the_cf_checker(hef_reference, tmp_path):
    particles = sorted((hef_reference / "particles").glob("particles_*.nc"))
    assert particles, "the reference run wrote no particle file"
    for path in (hef_reference / "output.nc", hef_reference / "output_ts.nc", particles[-1]):
        assert compliance_issues(path, tmp_path) == [], path.name


def test_xarray_decodes_time_and_readers_find_the_projection(hef_reference):
    rioxarray = pytest.importorskip("rioxarray")
    with xr.open_dataset(hef_reference / "output.nc", decode_coords="all") as ds:
        assert ds["time"].dt.year.values.tolist() == list(range(1900, 1931, 2))
        assert ds.rio.crs.to_epsg() == 32632
        assert ds["thk"].rio.crs.to_epsg() == 32632
        assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
        assert ds["thk"].encoding["grid_mapping"] == "crs"
        # hyoga-style readers find the velocity components by standard name
        names = {v.attrs.get("standard_name") for v in ds.data_vars.values()}
        assert {"land_ice_surface_x_velocity", "land_ice_surface_y_velocity"} <= names
        assert "standard_name" not in ds["velsurf_mag"].attrs
        with netCDF4.Dataset(HEF_INPUT) as source:
            assert ds.attrs["input_title"] == source.title
            assert ds.attrs["input_source"] == source.source
        assert ds.attrs["title"].startswith("igm-core glacier simulation of Hintereisferner")
    raster = rioxarray.open_rasterio(hef_reference / "output.nc", variable=["thk"])
    assert raster.rio.crs.to_epsg() == 32632
    with netCDF4.Dataset(hef_reference / "output_ts.nc") as ts:
        assert ts["time"].units == "days since 0000-01-01" and ts["time"].calendar == "365_day"
        assert ts["time"][0] / 365.0 == 1900.0


def load_with(tmp_path: Path, writer) -> object:
    path = write_tiny_input(tmp_path / "input.nc")
    with netCDF4.Dataset(path, "a") as ds:
        writer(ds)
    plugins, plugin = load_plugin(local, "inputs", local.Params())
    from igm_core.state import State

    state = State()
    plugins.call(plugin, "igm_input_initialize", state=state, run=run_context(tmp_path))
    return state


def _cf_mapping(ds):
    var = ds.createVariable("mapping", "i4")
    var.grid_mapping_name = "transverse_mercator"
    var.longitude_of_central_meridian = 9.0
    var.latitude_of_projection_origin = 0.0
    var.scale_factor_at_central_meridian = 0.9996
    var.false_easting = 500000.0
    var.false_northing = 0.0
    var.semi_major_axis = 6378137.0
    var.inverse_flattening = 298.257223563
    ds["thk"].grid_mapping = "mapping"


@pytest.mark.parametrize(("writer", "expected"), [
    (lambda ds: ds.setncattr("crs", "EPSG:32632"), 32632),
    (lambda ds: ds.setncattr("spatial_ref", "EPSG:2056"), 2056),
    (_cf_mapping, None),
    (lambda ds: None, "none"),
])
def test_the_input_projection_is_read(tmp_path, writer, expected):
    from pyproj import CRS

    state = load_with(tmp_path, writer)
    if expected == "none":
        assert state.grid.crs is None
        return
    crs = CRS.from_wkt(state.grid.crs)
    if expected is None:  # a CF grid mapping: UTM 32N on WGS 84, without an EPSG code
        assert crs.to_cf()["grid_mapping_name"] == "transverse_mercator"
        assert crs.to_cf()["longitude_of_central_meridian"] == 9.0
    else:
        assert crs.to_epsg() == expected


def test_a_bad_projection_names_the_file(tmp_path):
    with pytest.raises(DataError) as info:
        load_with(tmp_path, lambda ds: ds.setncattr("crs", "EPSG:99999999"))
    assert str(info.value).startswith(f"{tmp_path / 'input.nc'}: cannot read the map projection:")


def test_read_crs_prefers_the_grid_mapping_variable(tmp_path):
    path = write_tiny_input(tmp_path / "input.nc")
    with netCDF4.Dataset(path, "a") as ds:
        _cf_mapping(ds)
        ds.setncattr("crs", "EPSG:2056")  # a global attribute loses to the variable
    with netCDF4.Dataset(path) as ds:
        assert "Transverse Mercator" in read_crs(ds, path) or "transverse" in read_crs(
            ds, path).lower()


def test_a_run_without_projection_still_passes_the_cf_checker(tmp_path):
    write_tiny_input(tmp_path / "data" / "input.nc")
    proc = run_igm(["processes=[time]", "processes.time.start=0", "processes.time.end=2",
                    "processes.time.save=1", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with netCDF4.Dataset(tmp_path / "run" / "output.nc") as ds:
        assert "crs" not in ds.variables and "grid_mapping" not in ds["thk"].ncattrs()
        np.testing.assert_array_equal(ds["time"][:], [0.0, 365.0, 730.0])
    assert compliance_issues(tmp_path / "run" / "output.nc", tmp_path) == []

"""The mass budget thk keeps is published in output_ts.nc and closes: at
every save, the volume change since the previous save equals the sum of the
budget terms (mean rates in m3 yr-1 over the interval, times its length) to
float32 round-off, on the Hintereisferner run (mass balance, ice flow,
outflow, particles)."""

from __future__ import annotations

import netCDF4
import numpy as np
from cf_units import Unit

from igm_plugins._netcdf import years as netcdf_years

TERMS = {"budget_smb": 1.0, "budget_sources": 1.0, "budget_unmet_ablation": 1.0,
         "budget_outflow": -1.0, "budget_clip": 1.0}


def test_the_budget_terms_add_up_to_the_volume_change(hef_reference):
    with netCDF4.Dataset(hef_reference / "output_ts.nc") as ds:
        t = netcdf_years(ds)
        volume_m3 = 1e9 * np.asarray(ds["vol"][:], "float64")
        bounds = np.asarray(ds["time_bnds"][:], "float64") / 365.0
        for name in TERMS:
            var = ds[name]
            assert Unit(var.units) == Unit("m3 yr-1"), name
            assert var.cell_methods == "time: mean"
            assert np.ma.is_masked(var[0])  # no interval before the first save
        rates = {name: np.asarray(ds[name][1:], "float64") for name in TERMS}
    np.testing.assert_allclose(bounds[1:, 0], t[:-1])
    np.testing.assert_allclose(bounds[:, 1], t)
    interval = np.diff(t)
    budget = sum(sign * rates[name] for name, sign in TERMS.items()) * interval
    change = np.diff(volume_m3)
    # float32 thickness: round-off of 1e-6 of the volume per interval at most
    np.testing.assert_allclose(budget, change, rtol=0, atol=1e-6 * volume_m3.max())
    # a retreating glacier: ablation dominates, and no clipping under the CFL step
    assert np.all(rates["budget_smb"] < 0)
    assert np.all(rates["budget_sources"] == 0) and np.all(rates["budget_clip"] == 0)
    assert np.all(rates["budget_unmet_ablation"] >= 0)

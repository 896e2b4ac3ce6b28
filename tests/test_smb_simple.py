"""smb_simple: the formula, linear interpolation in time, update frequency,
tables from a file, and one clear line for a bad table."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from igm_core.errors import ConfigError, DataError
from igm_core.testing import ProcessContract, make_state, run_process
from igm_plugins.processes import smb_simple

HEADER = ["time", "gradabl", "gradacc", "ela", "accmax"]


class TestContract(ProcessContract):
    plugin = smb_simple
    state_kwargs: ClassVar[dict[str, float]] = {"thk": 100.0, "topg": 2800.0}


def expected(z, gradabl, gradacc, ela, accmax):
    z = np.asarray(z, dtype="float64")
    return np.where(z < ela, gradabl * (z - ela), np.minimum(gradacc * (z - ela), accmax))


def elevation_state(t=0.0):
    z = np.linspace(2000.0, 4000.0, 30).reshape(3, 10)
    return make_state(nx=10, ny=3, t=t, topg=z, thk=0.0), z


def test_formula_below_and_above_the_ela_with_cap(tmp_path):
    state, z = elevation_state()
    params = smb_simple.Params(array=[HEADER, [0, 0.009, 0.005, 3000, 2.0]])
    run_process(smb_simple, state, params, steps=0, output_dir=tmp_path)
    smb = state.smb.numpy()
    np.testing.assert_allclose(smb, expected(z, 0.009, 0.005, 3000, 2.0), rtol=1e-5, atol=1e-5)
    assert smb.min() == pytest.approx(-9.0, rel=1e-6)  # 2000 m: 0.009 * -1000
    assert smb.max() == pytest.approx(2.0)  # capped at accmax above 3400 m


def test_parameters_are_interpolated_linearly_in_time(tmp_path):
    table = [HEADER, [1900, 0.009, 0.005, 2800, 2.0], [2000, 0.007, 0.003, 3000, 1.0]]
    params = smb_simple.Params(array=table, update_freq=0.0)
    state, z = elevation_state(t=1900.0)
    run_process(smb_simple, state, params, steps=3, dt=25.0, output_dir=tmp_path)  # t = 1975
    np.testing.assert_allclose(state.smb.numpy(), expected(z, 0.0075, 0.0035, 2950, 1.25),
                               rtol=1e-5, atol=1e-5)
    run_process(smb_simple, state, params, steps=1, dt=100.0, output_dir=tmp_path)  # 2075
    np.testing.assert_allclose(state.smb.numpy(), expected(z, 0.007, 0.003, 3000, 1.0),
                               rtol=1e-5, atol=1e-5)


def test_recomputed_only_every_update_freq_years(tmp_path):
    table = [HEADER, [0, 0.01, 0.01, 3000, 5.0], [100, 0.01, 0.01, 3100, 5.0]]
    params = smb_simple.Params(array=table, update_freq=10.0)
    state, z = elevation_state()
    # updates at t = 0 (initialize) and t = 10; the steps at 2, 4, 6, 8 and 12 keep the field
    run_process(smb_simple, state, params, steps=6, dt=2.0, output_dir=tmp_path)
    np.testing.assert_allclose(state.smb.numpy(), expected(z, 0.01, 0.01, 3010, 5.0), atol=1e-4)


def test_table_from_a_file(tmp_path):
    (tmp_path / "smb.txt").write_text(
        "# my climate\nela, time, gradabl, gradacc, accmax\n3100, 0, 0.008, 0.004, 1.5\n")
    state, z = elevation_state()
    run_process(smb_simple, state, smb_simple.Params(file="smb.txt"), steps=1,
                output_dir=tmp_path)
    np.testing.assert_allclose(state.smb.numpy(), expected(z, 0.008, 0.004, 3100, 1.5),
                               atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"array": [["time", "ela"], [0, 1]]},
     "processes.smb_simple.array: header ['time', 'ela'] lacks column(s) gradabl, gradacc"),
    ({"array": [HEADER, [10, 0, 0, 0, 0], [5, 0, 0, 0, 0]]},
     "processes.smb_simple.array: times must be strictly increasing"),
    ({"array": [HEADER, [10, 0, "x", 0, 0]]},
     "processes.smb_simple.array: rows must hold numbers only"),
    ({"array": [HEADER]}, "processes.smb_simple.array: needs a header row"),
    ({"update_freq": -1.0}, "processes.smb_simple.update_freq must be >= 0 years, got -1.0"),
])
def test_bad_tables_are_refused_when_the_parameters_are_built(kwargs, message):
    with pytest.raises(ConfigError) as info:
        smb_simple.Params(**kwargs)
    assert message in str(info.value)


def test_missing_table_file_names_the_key(tmp_path):
    state, _ = elevation_state()
    with pytest.raises(DataError) as info:
        run_process(smb_simple, state, smb_simple.Params(file="missing.txt"), steps=0,
                    output_dir=tmp_path)
    assert "processes.smb_simple.file: 'missing.txt' not found" in str(info.value)


def test_unreadable_table_file_names_the_file(tmp_path):
    path = tmp_path / "smb.txt"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe binary")  # a netCDF file given by mistake
    state, _ = elevation_state()
    with pytest.raises(DataError) as info:
        run_process(smb_simple, state, smb_simple.Params(file="smb.txt"), steps=0,
                    output_dir=tmp_path)
    assert str(info.value).startswith(f"processes.smb_simple.file: cannot read {path} as a text "
                                      "table (")


def test_computed_at_the_first_update_when_the_clock_starts_later(tmp_path):
    state, z = elevation_state(t=float("nan"))  # time comes after smb_simple in the list
    params = smb_simple.Params(array=[HEADER, [0, 0.01, 0.01, 3000, 5.0]], update_freq=10.0)
    from igm_core.testing import load_plugin, run_context

    registry, plugin = load_plugin(smb_simple, "processes", params)
    (memory,) = registry.call(plugin, "igm_process_initialize", state=state,
                              run=run_context(tmp_path))
    np.testing.assert_array_equal(state.smb.numpy(), 0.0)
    state.t = 0.0
    registry.call(plugin, "igm_process_update", state=state, memory=memory)
    np.testing.assert_allclose(state.smb.numpy(), expected(z, 0.01, 0.01, 3000, 5.0), atol=1e-5)


@pytest.mark.parametrize("mask_accumulation", [True, False])
def test_no_accumulation_outside_the_ice_mask(tmp_path, mask_accumulation):
    state, z = elevation_state()
    icemask = np.zeros_like(z)
    icemask[:, :5] = 1.0
    import tensorflow as tf

    state.icemask = tf.constant(icemask, tf.float32)
    params = smb_simple.Params(array=[HEADER, [0, 0.01, 0.01, 3000, 5.0]],
                               mask_accumulation=mask_accumulation)
    run_process(smb_simple, state, params, steps=1, output_dir=tmp_path)
    full = expected(z, 0.01, 0.01, 3000, 5.0)
    want = np.where(icemask > 0.5, full, np.minimum(full, 0.0)) if mask_accumulation else full
    np.testing.assert_allclose(state.smb.numpy(), want, atol=1e-5)
    assert (want != full).any() == mask_accumulation

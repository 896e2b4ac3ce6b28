"""The configuration tree composed with Hydra's compose API."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from igm_core.app import register_configs, selection_from
from igm_core.config import CoreParams
from igm_core.plugins import discover


@pytest.fixture(scope="module")
def found():
    plugins = discover()
    register_configs(plugins)
    return plugins


def make(overrides: list[str]):
    with initialize_config_module("igm_core.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def test_defaults_select_plugins_in_order(found):
    cfg = make([])
    assert list(cfg.processes) == ["smb_simple", "iceflow", "time", "thk"]
    assert list(cfg.inputs) == ["local"]
    assert OmegaConf.get_type(cfg.core) is CoreParams


def test_override_key_and_list(found):
    cfg = make(["processes=[time]", "processes.time.start=1950"])
    assert list(cfg.processes) == ["time"]
    assert cfg.processes.time.start == 1950.0
    (entry, params), = selection_from(cfg, found)["processes"]
    assert entry.name == "time" and type(params).__name__ == "Params"
    assert (params.start, params.end) == (1950.0, 2100.0)


def test_plugin_params_are_validated(found):
    with pytest.raises(ConfigCompositionException) as err:
        make(["processes=[time]", "processes.time.start=abc"])
    assert isinstance(err.value.__cause__, ValidationError)
    with pytest.raises(ConfigCompositionException) as err:
        make(["processes=[time]", "processes.time.strt=1"])
    assert isinstance(err.value.__cause__, (ConfigKeyError, ConfigAttributeError))
    assert err.value.__cause__.full_key == "processes.time.strt"


def test_core_keys_are_validated(found):
    cfg = make(["processes=[time]", "core.hardware.visible_gpus=[0]"])
    assert list(cfg.core.hardware.visible_gpus) == [0]
    with pytest.raises(ConfigCompositionException):
        make(["processes=[time]", "core.print_comp=maybe"])


def test_user_experiment_is_found_in_the_launch_folder(found, tmp_path, monkeypatch):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /processes: [time]\n"
        "processes:\n  time:\n    start: 1850.0\n")
    monkeypatch.chdir(tmp_path)
    cfg = make(["+experiment=mine", "processes.time.end=1900"])
    assert list(cfg.processes) == ["time"]
    assert (cfg.processes.time.start, cfg.processes.time.end) == (1850.0, 1900.0)

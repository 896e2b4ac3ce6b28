"""core.url_data: download once, refuse unsafe archives, name the URL."""

from __future__ import annotations

import zipfile

import pytest
from conftest import write_tiny_input

from igm_core.data import MARKER, fetch
from igm_core.errors import DataError


def test_netcdf_url_is_fetched_once(tmp_path):
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    folder = tmp_path / "data"
    fetch(source.as_uri(), folder)
    assert (folder / "glacier.nc").is_file()
    assert (folder / MARKER).read_text().strip() == source.as_uri()
    source.unlink()  # cached: a second fetch does not download again
    fetch(source.as_uri(), folder)
    assert (folder / "glacier.nc").is_file()


@pytest.mark.parametrize("member", ["../evil.nc", "/abs/evil.nc"])
def test_archive_member_outside_the_folder_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, b"x")
    with pytest.raises(DataError, match="unsafe member"):
        fetch(archive.as_uri(), tmp_path / "data")
    assert not (tmp_path / "evil.nc").exists() and not (tmp_path / "data").exists()


def test_file_that_is_not_netcdf_names_the_url(tmp_path):
    bogus = tmp_path / "input.nc"
    bogus.write_text("not netcdf")
    with pytest.raises(DataError, match=f"'{bogus.as_uri()}' is not a readable netCDF file"):
        fetch(bogus.as_uri(), tmp_path / "data")


def test_missing_file_url(tmp_path):
    url = (tmp_path / "absent.zip").as_uri()
    with pytest.raises(DataError, match=f"could not download '{url}'"):
        fetch(url, tmp_path / "data")

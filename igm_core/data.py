"""Fetch ``core.url_data`` once into ``core.folder_data``.

The download is untrusted: it is written to a temporary file first (a broken
transfer never passes for a complete file), archives are unpacked into a
temporary folder and refused when a member would land outside it, and the
folder is moved into place in one step. A marker file caches the URL.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from igm_core.errors import DataError

log = logging.getLogger("igm")
MARKER = ".igm_url_data"


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"core.url_data: could not download '{url}': {reason}") from exc
    if expected is not None and dest.stat().st_size != int(expected):
        raise DataError(f"core.url_data: download of '{url}' is incomplete "
                        f"({dest.stat().st_size} of {expected} bytes)")


def _safe_extract(archive: Path, url: str, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if name.is_absolute() or ".." in name.parts or is_link:
                raise DataError(f"core.url_data: archive '{url}' has an unsafe member "
                                f"'{info.filename}' (absolute path, '..' or link); refused")
        zf.extractall(dest)


def _check_netcdf(path: Path, url: str) -> None:
    import netCDF4

    try:
        netCDF4.Dataset(path).close()
    except OSError as exc:
        raise DataError(f"core.url_data: '{url}' is not a readable netCDF file: {exc}") from exc


def fetch(url: str, folder: Path) -> Path:
    """Download ``url`` (zip or netCDF; ``file://`` works) into ``folder``
    unless it already holds that URL's data; return ``folder``."""
    marker = folder / MARKER
    if marker.is_file() and marker.read_text().strip() == url:
        log.debug("core.url_data: %s already in %s", url, folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".igm_fetch_") as tmp:
        tmp_dir = Path(tmp)
        raw = tmp_dir / "download"
        _download(url, raw)
        staging = tmp_dir / "data"
        staging.mkdir()
        if zipfile.is_zipfile(raw):
            _safe_extract(raw, url, staging)
            for nc in staging.rglob("*.nc"):
                _check_netcdf(nc, url)
        else:
            name = PurePosixPath(urllib.parse.urlparse(url).path).name or "input.nc"
            _check_netcdf(raw, url)
            raw.replace(staging / name)
        (staging / MARKER).write_text(url + "\n")
        if folder.exists():
            for item in staging.iterdir():
                target = folder / item.name
                if target.is_dir():
                    shutil.rmtree(target)
                item.replace(target)
        else:
            staging.replace(folder)
    log.info("core.url_data: fetched %s into %s", url, folder)
    return folder

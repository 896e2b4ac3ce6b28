"""Fetch ``core.url_data`` once into ``core.folder_data``.

The download is untrusted: it is written to a temporary folder first (a
broken transfer never passes for a complete file), bounded in time
(``core.url_data_timeout_s``) and size (``core.url_data_max_mb``, also the
unpacked size of a zip), optionally pinned by its sha256, and archives are
refused when a member would land outside the folder.

Fetching never deletes or overwrites what is not its own: a marker file
``.igm_url_data`` in the folder holds the URL (first line) and the top-level
names fetching put there (one a line). A top-level item of the download whose
name already exists in the folder and is not owned by the marker stops the
fetch before anything is changed. The marker is written last, atomically, so
an interrupted fetch is done again on the next run. Jobs fetching into the
same folder at once (a parallel sweep) take turns, and all but the first
find the data there.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from igm_core.errors import DataError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("igm")
MARKER = ".igm_url_data"
CHUNK = 1 << 20  # bytes read at a time (1 MiB)
READ_TIMEOUT_S = 30.0  # longest wait for any single read from the server (s)
PROGRESS_EVERY_S = 5.0  # least time between two progress lines (s)


def _size(n: int) -> str:
    """``n`` bytes as text: bytes below 0.1 MB, MB (1e6 bytes) above."""
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _too_big(url: str, what: str, max_mb: float) -> DataError:
    return DataError(f"core.url_data: '{url}' {what}, more than core.url_data_max_mb={max_mb:g}; "
                     "nothing was changed (raise core.url_data_max_mb to allow it)")


class _Progress:
    """Log the size received on logger ``igm``, at most every
    PROGRESS_EVERY_S seconds and every 10 % of the total (of the size so far
    when the server does not announce it)."""

    def __init__(self, url: str, total: int | None) -> None:
        self.url, self.total = url, total
        self.last_time, self.last_size = time.monotonic(), 0

    def update(self, size: int) -> None:
        now = time.monotonic()
        step = 0.1 * (self.total or self.last_size)
        if now - self.last_time < PROGRESS_EVERY_S or size - self.last_size < step:
            return
        self.last_time, self.last_size = now, size
        of = f" of {_size(self.total)} ({100 * size / self.total:.0f} %)" if self.total else ""
        log.info("core.url_data: %s%s received from %s", _size(size), of, self.url)


def _download(url: str, dest: Path, timeout_s: float, max_mb: float) -> str:
    """Write ``url``'s bytes to ``dest`` within ``timeout_s`` seconds of wall
    clock (each read waits at most min(30, timeout_s) s, so the deadline is
    overrun by one read at most) and at most ``max_mb`` MB (1e6 bytes);
    return their sha256 (hex)."""
    deadline = time.monotonic() + timeout_s
    max_bytes = max_mb * 1e6
    wait = min(READ_TIMEOUT_S, timeout_s)
    limit = f"core.url_data_timeout_s={timeout_s:g} s"
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=wait) as response, \
                open(dest, "wb") as out:
            length = response.headers.get("Content-Length", "")
            expected = int(length) if length.strip().isdigit() else None
            if expected is not None and expected > max_bytes:
                raise _too_big(url, f"is {_size(expected)}", max_mb)
            progress = _Progress(url, expected)
            read = getattr(response, "read1", response.read)  # read1: what is there, no waiting
            while chunk := read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(url, f"sent more than {_size(int(max_bytes))}", max_mb)
                digest.update(chunk)
                out.write(chunk)
                if time.monotonic() > deadline:
                    raise DataError(f"core.url_data: download of '{url}' did not finish "
                                    f"within {limit} ({_size(size)} received); nothing was "
                                    "changed")
                progress.update(size)
    except TimeoutError as exc:
        raise DataError(f"core.url_data: download of '{url}' stopped: no answer for {wait:g} s "
                        f"after {_size(size)} ({limit}); nothing was changed") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise DataError(f"core.url_data: could not download '{url}': no connection within "
                            f"{wait:g} s ({limit})") from exc
        raise DataError(f"core.url_data: could not download '{url}': {reason}") from exc
    if expected is not None and size != expected:
        raise DataError(f"core.url_data: download of '{url}' is incomplete "
                        f"({size} of {expected} bytes)")
    return digest.hexdigest()


def _safe_extract(archive: Path, url: str, dest: Path, max_mb: float) -> None:
    """Unpack zip ``archive`` into ``dest`` unless a member is unsafe or the
    members' declared sizes (which zipfile enforces) add up to more than
    ``max_mb`` MB."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                name = PurePosixPath(info.filename)
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                odd = any(c in info.filename for c in "\n\r") or name.parts[:1] == (MARKER,)
                if name.is_absolute() or ".." in name.parts or is_link or odd:
                    raise DataError(f"core.url_data: archive '{url}' has an unsafe member "
                                    f"'{info.filename}' (absolute path, '..', link, line break "
                                    f"or {MARKER}); refused")
            total = sum(info.file_size for info in infos)
            if infos and total > max_mb * 1e6:
                big = max(infos, key=lambda info: info.file_size)
                raise _too_big(url, f"unpacks to {_size(total)} (biggest member "
                                    f"'{big.filename}', {_size(big.file_size)})", max_mb)
            zf.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
        raise DataError(f"core.url_data: could not unpack archive '{url}': {exc}") from exc


def _check_netcdf(path: Path, url: str) -> None:
    import netCDF4

    try:
        netCDF4.Dataset(path).close()
    except OSError as exc:
        raise DataError(f"core.url_data: '{url}' is not a readable netCDF file: {exc}") from exc


def _read_marker(marker: Path) -> tuple[str, set[str]]:
    """The URL of the last complete fetch ('' if none) and the top-level
    names fetching owns (none for a marker holding only a URL)."""
    try:
        lines = marker.read_text().splitlines()
    except FileNotFoundError:
        return "", set()
    return (lines[0].strip() if lines else ""), {line for line in lines[1:] if line}


def _write_marker(marker: Path, tmp_dir: Path, url: str, names: set[str]) -> None:
    """Replace ``marker`` in one step (written in ``tmp_dir`` first)."""
    draft = tmp_dir / MARKER
    draft.write_text("".join(f"{line}\n" for line in [url, *sorted(names)]))
    draft.replace(marker)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _lock(path: Path) -> int:
    """A descriptor of ``path`` holding an exclusive ``flock`` on it, waiting
    for the holder; -1 where the file system refuses."""
    assert fcntl is not None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.debug("core.url_data: no lock %s: %s", path, exc)
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.stat(path), os.fstat(fd)):
                return fd  # still the file at ``path``: the lock is ours
        except FileNotFoundError:
            pass
        except OSError as exc:
            os.close(fd)
            log.debug("core.url_data: no lock %s: %s", path, exc)
            return -1
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the last holder removed it: lock the next file


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the lock on fetching into ``folder``, so parallel jobs of a sweep
    wait for the first one's fetch instead of repeating or clashing with it:
    ``flock`` on the file ``.NAME.igm_url_data.lock`` beside ``folder``,
    removed on release. Without ``fcntl`` (Windows), or where the file
    system refuses the lock, fetching goes on unlocked."""
    path = folder.parent / f".{folder.name}{MARKER}.lock"
    fd = _lock(path) if fcntl is not None else -1
    try:
        yield
    finally:
        if fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # before unlocking: waiters then lock a fresh file
            os.close(fd)


def fetch(url: str, folder: Path, *, timeout_s: float = 600.0, max_mb: float = 1024.0,
          sha256: str = "") -> Path:
    """Download ``url`` (zip or netCDF; ``file://`` works) into ``folder``
    unless it already holds that URL's data; return ``folder``.

    ``timeout_s``: overall wall-clock limit of the download (s); ``max_mb``:
    largest download and unpacked zip (MB, 1e6 bytes); ``sha256``: expected
    digest of the download (hex, any case; '' = not checked). DataError, with
    ``folder`` unchanged, when the download or its content is refused or a
    top-level item would replace something fetching does not own.
    """
    if folder.exists() and not folder.is_dir():
        raise DataError(f"core.url_data: core.folder_data {folder} is a file, not a folder")
    marker = folder / MARKER
    if _read_marker(marker)[0] == url:
        log.debug("core.url_data: %s already in %s", url, folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        if _read_marker(marker)[0] == url:  # again: another job may have fetched it
            log.debug("core.url_data: %s already in %s", url, folder)
            return folder
        base = folder if folder.is_dir() else folder.parent  # the temporary folder's place
        with tempfile.TemporaryDirectory(dir=base, prefix=".igm_fetch_") as tmp:
            tmp_dir = Path(tmp)
            staging = tmp_dir / "data"
            size = _download_into(url, staging, timeout_s, max_mb, sha256)
            _move_into(staging, folder, url)
    log.info("core.url_data: fetched %s (%s) into %s", url, _size(size), folder)
    return folder


def _download_into(url: str, staging: Path, timeout_s: float, max_mb: float,
                   sha256: str) -> int:
    """Download ``url`` beside the new folder ``staging`` and unpack or move
    it into ``staging``, checked; return the download's size (bytes)."""
    raw = staging.parent / "download"
    actual = _download(url, raw, timeout_s, max_mb)
    size = raw.stat().st_size
    if sha256 and actual != sha256.lower():
        raise DataError(f"core.url_data: '{url}' has sha256 {actual}, expected "
                        f"{sha256.lower()} (core.url_data_sha256); nothing was changed")
    staging.mkdir()
    if zipfile.is_zipfile(raw):
        _safe_extract(raw, url, staging, max_mb)
        for nc in staging.rglob("*.nc"):
            _check_netcdf(nc, url)
    else:
        name = PurePosixPath(urllib.parse.urlparse(url).path).name or "input.nc"
        _check_netcdf(raw, url)
        raw.replace(staging / name)
    return size


def _move_into(staging: Path, folder: Path, url: str) -> None:
    """Move the top-level items of ``staging`` into ``folder``, replacing
    only names the marker owns, then write the marker; DataError before
    anything moves when another name is taken."""
    marker = folder / MARKER
    last_url, owned = _read_marker(marker)
    if last_url == url:  # fetched meanwhile by another job (where fetching is unlocked)
        return
    items = sorted(staging.iterdir())
    for item in items:  # every clash is found before anything moves
        if os.path.lexists(folder / item.name) and item.name not in owned:
            raise DataError(
                f"core.url_data: '{url}' holds '{item.name}', which already exists in "
                f"{folder} and was not fetched by core.url_data; nothing was changed "
                "(move it away or set core.folder_data to another folder)")
    folder.mkdir(exist_ok=True)
    names = {item.name for item in items}
    # until the moves are done the marker names no URL (the next run fetches
    # again) and owns both the old names and the new ones
    _write_marker(marker, staging.parent, "", owned | names)
    for item in items:
        _remove(folder / item.name)
        item.replace(folder / item.name)
    still = {name for name in owned if os.path.lexists(folder / name)}
    _write_marker(marker, staging.parent, url, still | names)

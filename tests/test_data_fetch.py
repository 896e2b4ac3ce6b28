"""core.url_data: download once, refuse unsafe archives, name the URL, never
replace what it did not fetch, and stop at its deadline and size limit."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import re
import socket
import threading
import time
import zipfile

import pytest
from conftest import write_tiny_input

from igm_core.config import CoreParams
from igm_core.data import MARKER, fetch
from igm_core.errors import ConfigError, DataError


def test_netcdf_url_is_fetched_once(tmp_path):
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    folder = tmp_path / "data"
    fetch(source.as_uri(), folder)
    assert (folder / "glacier.nc").is_file()
    assert (folder / MARKER).read_text().splitlines() == [source.as_uri(), "glacier.nc"]
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


# -- what fetching may replace ---------------------------------------------------


def _zip(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def _tree(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_clash_with_a_user_folder_changes_nothing(tmp_path):
    folder = tmp_path / "data"
    (folder / "mydir").mkdir(parents=True)
    (folder / "mydir" / "notes.txt").write_bytes(b"mine\x00\xff")
    before = _tree(folder)
    url = _zip(tmp_path / "remote.zip", {"other.txt": b"x", "mydir/new.txt": b"y"}).as_uri()
    with pytest.raises(DataError) as err:
        fetch(url, folder)
    assert str(err.value) == (
        f"core.url_data: '{url}' holds 'mydir', which already exists in {folder} and was not "
        "fetched by core.url_data; nothing was changed (move it away or set core.folder_data "
        "to another folder)")
    assert _tree(folder) == before  # other.txt did not move in either
    assert not list(tmp_path.glob(".igm_fetch_*")) and not list(folder.glob(".igm_fetch_*"))


def test_clash_with_the_experiment_folder_of_the_launch_folder(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "params.yaml").write_text("core:\n  url_data: x\n")
    url = _zip(tmp_path / "remote" / "data.zip", {"experiment/params.yaml": b"theirs"}).as_uri()
    before = _tree(tmp_path)
    with pytest.raises(DataError, match=r"holds 'experiment', which already exists in .* nothing "
                                        r"was changed"):
        fetch(url, tmp_path)
    assert _tree(tmp_path) == before
    assert not (tmp_path / MARKER).exists()


def test_old_marker_with_only_the_url_owns_nothing(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / MARKER).write_text("file:///old.zip\n")
    (folder / "a.txt").write_text("kept")
    url = _zip(tmp_path / "new.zip", {"a.txt": b"new"}).as_uri()
    with pytest.raises(DataError, match=r"holds 'a\.txt'"):
        fetch(url, folder)
    assert (folder / "a.txt").read_text() == "kept"


def test_a_new_url_replaces_what_the_previous_fetch_put_there(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "user.txt").write_text("mine")
    first = _zip(tmp_path / "v1.zip", {"inputs/a.txt": b"1", "inputs/old.txt": b"1",
                                       "only_v1.txt": b"1"}).as_uri()
    fetch(first, folder)
    lines = (folder / MARKER).read_text().splitlines()
    assert lines == [first, "inputs", "only_v1.txt"]
    second = _zip(tmp_path / "v2.zip", {"inputs/a.txt": b"2"}).as_uri()
    fetch(second, folder)
    assert (folder / "inputs" / "a.txt").read_text() == "2"
    assert not (folder / "inputs" / "old.txt").exists()  # the whole owned folder was replaced
    assert (folder / "user.txt").read_text() == "mine"
    # left in place and still owned, so a third URL may replace it
    assert (folder / MARKER).read_text().splitlines() == [second, "inputs", "only_v1.txt"]
    third = _zip(tmp_path / "v3.zip", {"only_v1.txt": b"3"}).as_uri()
    fetch(third, folder)
    assert (folder / "only_v1.txt").read_text() == "3"


def test_an_interrupted_fetch_is_done_again(tmp_path):
    """Before moving, the marker names no URL but owns the new names."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / MARKER).write_text("\ninputs\n")  # as a fetch killed during its moves leaves it
    (folder / "inputs").mkdir()
    url = _zip(tmp_path / "v.zip", {"inputs/a.txt": b"ok"}).as_uri()
    fetch(url, folder)
    assert (folder / "inputs" / "a.txt").read_text() == "ok"
    assert (folder / MARKER).read_text().splitlines() == [url, "inputs"]


def test_marker_name_inside_an_archive_is_refused(tmp_path):
    url = _zip(tmp_path / "m.zip", {MARKER: b"file:///x\nexperiment\n"}).as_uri()
    with pytest.raises(DataError, match="unsafe member"):
        fetch(url, tmp_path / "data")
    assert not (tmp_path / "data").exists()


# -- sha256 pin and size limit -----------------------------------------------------


def test_sha256_mismatch_writes_nothing(tmp_path):
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    actual = hashlib.sha256(source.read_bytes()).hexdigest()
    wrong = "0" * 64
    folder = tmp_path / "data"
    with pytest.raises(DataError) as err:
        fetch(source.as_uri(), folder, sha256=wrong)
    assert str(err.value) == (f"core.url_data: '{source.as_uri()}' has sha256 {actual}, expected "
                              f"{wrong} (core.url_data_sha256); nothing was changed")
    assert not folder.exists() and not list(tmp_path.glob(".igm_fetch_*"))


def test_sha256_match_in_any_case(tmp_path):
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    digest = hashlib.sha256(source.read_bytes()).hexdigest().upper()
    fetch(source.as_uri(), tmp_path / "data", sha256=digest)
    assert (tmp_path / "data" / "glacier.nc").read_bytes() == source.read_bytes()


def test_zip_that_unpacks_beyond_max_mb_is_refused(tmp_path):
    url = _zip(tmp_path / "bomb.zip", {"small.txt": b"x", "big.bin": bytes(5000)}).as_uri()
    assert (tmp_path / "bomb.zip").stat().st_size < 1000  # the download itself is within
    with pytest.raises(DataError) as err:
        fetch(url, tmp_path / "data", max_mb=0.001)
    assert str(err.value) == (
        f"core.url_data: '{url}' unpacks to 5,001 bytes (biggest member 'big.bin', 5,000 bytes), "
        "more than core.url_data_max_mb=0.001; nothing was changed (raise core.url_data_max_mb "
        "to allow it)")
    assert not (tmp_path / "data").exists()


def test_download_beyond_max_mb_is_refused_at_once(tmp_path):
    big = tmp_path / "big.nc"
    big.write_bytes(bytes(3000))
    with pytest.raises(DataError, match=r"'.*big\.nc' is 3,000 bytes, more than "
                                        r"core\.url_data_max_mb=0\.001; nothing was changed "
                                        r"\(raise core\.url_data_max_mb"):
        fetch(big.as_uri(), tmp_path / "data", max_mb=0.001)
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".igm_fetch_*"))


# -- local HTTP servers: no length, drip feed, silence ------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    announce = True  # send Content-Length
    drip_s = 0.0  # pause before each byte (s); 0: the body at once
    delay_s = 0.0  # pause before answering (s)
    hits: list[str] = []  # noqa: RUF012 (each server is given its own list)

    def do_GET(self):
        self.hits.append(self.path)
        time.sleep(self.delay_s)
        self.send_response(200)
        if self.announce:
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            if not self.drip_s:
                self.wfile.write(self.body)
            for i in range(len(self.body) if self.drip_s else 0):
                time.sleep(self.drip_s)
                self.wfile.write(self.body[i:i + 1])
                self.wfile.flush()
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(**attrs):
        handler = type("Handler", (_Handler,), {"hits": [], **attrs})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/input.nc", handler.hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_http_download_without_length_stops_past_max_mb(tmp_path, serve):
    url, _ = serve(body=bytes(50_000), announce=False)
    with pytest.raises(DataError, match=r"sent more than 1,000 bytes, more than "
                                        r"core\.url_data_max_mb=0\.001"):
        fetch(url, tmp_path / "data", max_mb=0.001)
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".igm_fetch_*"))


def test_http_netcdf_is_fetched(tmp_path, serve):
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    url, _ = serve(body=source.read_bytes())
    fetch(url, tmp_path / "data", timeout_s=10)
    assert (tmp_path / "data" / "input.nc").read_bytes() == source.read_bytes()


def test_parallel_jobs_fetch_once_and_all_succeed(tmp_path, serve):
    """The jobs of a parallel sweep fetch into the same folder at once: one
    downloads, the others wait for it and find the data there."""
    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    url, hits = serve(body=source.read_bytes(), delay_s=0.3)
    folder = tmp_path / "data"
    errors = []

    def job():
        try:
            fetch(url, folder, timeout_s=10)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(hits) == 1
    assert (folder / "input.nc").read_bytes() == source.read_bytes()
    assert (folder / MARKER).read_text().splitlines() == [url, "input.nc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "remote"]  # lock removed


def test_drip_feeding_server_fails_at_the_deadline(tmp_path, serve):
    url, _ = serve(body=bytes(100), drip_s=0.5)
    start = time.monotonic()
    with pytest.raises(DataError, match=re.escape(
            f"core.url_data: download of '{url}' did not finish within "
            "core.url_data_timeout_s=1.5 s (") + r".* received\); nothing was changed$"):
        fetch(url, tmp_path / "data", timeout_s=1.5)
    assert time.monotonic() - start < 5
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".igm_fetch_*"))


def test_silent_server_fails_at_the_deadline(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/data.zip"
        start = time.monotonic()
        with pytest.raises(DataError, match=re.escape(
                f"core.url_data: download of '{url}' stopped: no answer for 1 s after 0 bytes "
                "(core.url_data_timeout_s=1 s); nothing was changed")):
            fetch(url, tmp_path / "data", timeout_s=1.0)
        assert time.monotonic() - start < 5
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".igm_fetch_*"))


def test_progress_is_logged_every_tenth_at_most(tmp_path, monkeypatch, caplog):
    from igm_core import data

    source = write_tiny_input(tmp_path / "remote" / "glacier.nc")
    monkeypatch.setattr(data, "CHUNK", 100)  # many chunks
    monkeypatch.setattr(data, "PROGRESS_EVERY_S", 0.0)  # no wait between lines
    with caplog.at_level("INFO", logger="igm"):
        fetch(source.as_uri(), tmp_path / "data")
    lines = [r.getMessage() for r in caplog.records if " received from " in r.getMessage()]
    assert source.stat().st_size > 1000 and 5 <= len(lines) <= 10
    percents = [int(re.search(r"\((\d+) %\) received from ", line)[1]) for line in lines]
    assert all(b - a >= 10 for a, b in itertools.pairwise(percents))


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [("url_data_timeout_s", 0.0),
                                            ("url_data_max_mb", -1.0),
                                            ("url_data_sha256", "abc"),
                                            ("url_data_sha256", "g" * 64)])
def test_bad_url_data_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"^core.{key}"):
        CoreParams(**{key: value})

"""Download, resume, checksum, offline and extraction behaviour against a loopback server."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from srlib.data import download as dl
from srlib.data.download import (
    Archive,
    ChecksumError,
    DownloadError,
    download,
    extract,
    fetch_dataset,
)

# ------------------------------------------------------------------------------ server


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=a-` unless told to ignore it."""

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and srv.honor_range:
            start, status = int(re.fullmatch(r"bytes=(\d+)-", rng)[1]), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:  # promise everything, send part, hang up
            body = body[:srv.cut_after]
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.daemon_threads = True
    srv.files, srv.requests, srv.honor_range, srv.cut_after = {}, [], True, None
    srv.url = lambda name: f"http://127.0.0.1:{srv.server_address[1]}/{name}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def dead_url(name: str = "") -> str:
    """A URL on a 127.0.0.1 port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/{name}"


# ------------------------------------------------------------------------------ data


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(1, 4):
            zf.writestr(f"tiny_HR/{i:04d}.png", png_bytes(i))
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve_tiny(server, data: bytes) -> str:
    server.files["/tiny.zip"] = data
    return server.url("tiny.zip")


# ----------------------------------------------------------------------------- download


def test_download_verifies_md5_and_is_not_repeated(server, archive_bytes, tmp_path):
    url = serve_tiny(server, archive_bytes)
    dest = tmp_path / "dl" / "tiny.zip"
    assert download(url, dest, md5(archive_bytes), progress=False) == dest
    assert dest.read_bytes() == archive_bytes and not dest.with_name("tiny.zip.part").exists()
    assert server.requests == [{"path": "/tiny.zip", "range": None}]
    download(url, dest, md5(archive_bytes), progress=False)
    assert len(server.requests) == 1  # the file is there with the right md5: no request


def test_dropped_connection_keeps_part_and_next_run_resumes(server, archive_bytes, tmp_path):
    url = serve_tiny(server, archive_bytes)
    server.cut_after = 1000
    dest = tmp_path / "tiny.zip"
    with pytest.raises(DownloadError, match="resume") as err:
        download(url, dest, md5(archive_bytes), progress=False)
    assert url in str(err.value) and not isinstance(err.value, ChecksumError)
    part = dest.with_name("tiny.zip.part")
    assert part.read_bytes() == archive_bytes[:1000] and not dest.exists()
    server.cut_after = None
    download(url, dest, md5(archive_bytes), progress=False)
    assert server.requests[-1]["range"] == "bytes=1000-"
    assert dest.read_bytes() == archive_bytes and not part.exists()


def test_complete_part_is_not_downloaded_again(server, archive_bytes, tmp_path):
    """Killed after the last byte but before the rename: the 416 answer is enough."""
    url = serve_tiny(server, archive_bytes)
    dest = tmp_path / "tiny.zip"
    dest.with_name("tiny.zip.part").write_bytes(archive_bytes)
    download(url, dest, md5(archive_bytes), progress=False)
    assert [r["range"] for r in server.requests] == [f"bytes={len(archive_bytes)}-"]
    assert dest.read_bytes() == archive_bytes


def test_server_ignoring_range_restarts_from_zero(server, archive_bytes, tmp_path):
    url = serve_tiny(server, archive_bytes)
    server.honor_range = False
    dest = tmp_path / "tiny.zip"
    dest.with_name("tiny.zip.part").write_bytes(b"x" * 100)  # would corrupt if appended to
    download(url, dest, md5(archive_bytes), progress=False)
    assert server.requests[0]["range"] == "bytes=100-"
    assert dest.read_bytes() == archive_bytes


def test_checksum_mismatch_sets_the_file_aside(server, archive_bytes, tmp_path):
    url = serve_tiny(server, archive_bytes)
    dest = tmp_path / "tiny.zip"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        download(url, dest, wrong, progress=False)
    msg = str(err.value)
    assert wrong in msg and md5(archive_bytes) in msg and url in msg
    assert "delete" in msg and "again" in msg
    assert not dest.exists() and not dest.with_name("tiny.zip.part").exists()
    assert dest.with_name("tiny.zip.bad").read_bytes() == archive_bytes
    dest.write_bytes(archive_bytes[:-1])  # a bad file placed by hand is refused too
    with pytest.raises(ChecksumError, match="not the expected file"):
        download(dead_url("tiny.zip"), dest, md5(archive_bytes), progress=False)
    assert not dest.exists()


def test_network_failures_are_download_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(server.url("missing.zip"), tmp_path / "missing.zip", "a" * 32,
                 progress=False)
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/tiny.zip"
        with pytest.raises(DownloadError, match=re.escape(url)):
            download(url, tmp_path / "tiny.zip", "a" * 32, timeout=0.3, progress=False)


# ------------------------------------------------------------------------------ extract


def test_extract_zip_and_tar(tmp_path, archive_bytes):
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(archive_bytes)
    out = extract(archive, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (out / "tiny_HR").iterdir()) == [
        "0001.png", "0002.png", "0003.png"]
    archive.unlink()  # a finished folder is recognised without the archive
    assert extract(archive, tmp_path / "out", progress=False) == out
    assert not (tmp_path / "out.partial").exists()

    tar = tmp_path / "t.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        info = tarfile.TarInfo("T/T_HR/2.png")
        info.size = len(png_bytes(2))
        tf.addfile(info, io.BytesIO(png_bytes(2)))
    assert (extract(tar, tmp_path / "t", progress=False) / "T/T_HR/2.png").read_bytes() == \
        png_bytes(2)


def tar_with(path, name: str, link: str | None = None) -> None:
    """A tar holding ok/fine.txt, then `name` (a file, or a symlink to `link`)."""
    with tarfile.open(path, "w") as tf:
        for member, data in (("ok/fine.txt", b"fine"), (name, b"evil")):
            info = tarfile.TarInfo(member)
            if link and member == name:
                info.type, info.linkname, data = tarfile.SYMTYPE, link, b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name, link", [("../evil.txt", None),
                                        ("ok/evil.txt", "../../../evil.txt"),
                                        ("ok/evil.txt", "/etc/passwd")])
def test_tar_escaping_the_folder_is_refused(tmp_path, name, link):
    archive = tmp_path / "evil.tar"
    tar_with(archive, name, link)
    dest = tmp_path / "sub" / "out"
    with pytest.raises(DownloadError, match="refusing to unpack"):
        extract(archive, dest, progress=False)
    assert not dest.exists() and not dest.with_name("out.partial").exists()
    assert [p.name for p in tmp_path.rglob("*evil*")] == ["evil.tar"]
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_absolute_or_dotdot_names_are_kept_inside_the_folder(tmp_path, kind):
    archive = tmp_path / f"evil.{kind}"
    if kind == "tar":
        tar_with(archive, "/evil.txt")
    else:
        with zipfile.ZipFile(archive, "w") as zf:
            bad = zipfile.ZipInfo("x")
            bad.filename = "../evil.txt"  # ZipInfo() would clean the name
            zf.writestr(bad, b"evil")
    out = extract(archive, tmp_path / "sub" / "out", progress=False)
    assert (out / "evil.txt").read_bytes() == b"evil"
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == sorted([archive.name, "evil.txt"])


# ------------------------------------------------------------------------------ datasets


@pytest.fixture
def tiny_dataset(monkeypatch, archive_bytes):
    """Register a one-archive dataset "tiny"; returns a function to set its catalogue URL."""
    def register(url: str) -> Archive:
        archive = Archive("tiny.zip", url, md5(archive_bytes), "a few KB", 3, "tiny_HR")
        monkeypatch.setitem(dl.DATASETS, "tiny", (archive,))
        return archive
    return register


def test_fetch_dataset_downloads_extracts_then_reuses(server, archive_bytes, tmp_path,
                                                      tiny_dataset):
    tiny_dataset(serve_tiny(server, archive_bytes))
    (hr,) = fetch_dataset("tiny", root=tmp_path, progress=False)
    assert hr == tmp_path / "downloads" / "extracted" / "tiny" / "tiny_HR"
    assert len(list(hr.glob("*.png"))) == 3
    assert fetch_dataset("tiny", root=tmp_path, progress=False) == [hr]
    assert len(server.requests) == 1


def test_fetch_dataset_offline_uses_placed_archive_or_folder(archive_bytes, tmp_path,
                                                            tiny_dataset):
    tiny_dataset(dead_url("tiny.zip"))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "tiny.zip").write_bytes(archive_bytes)
    (hr,) = fetch_dataset("tiny", root=tmp_path, progress=False)
    assert len(list(hr.glob("*.png"))) == 3

    unpacked = tmp_path / "by_hand" / "downloads" / "extracted" / "tiny"
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        zf.extractall(unpacked)
    assert fetch_dataset("tiny", root=tmp_path / "by_hand", progress=False) == [
        unpacked / "tiny_HR"]


def test_mirror_serving_a_wrong_file_is_a_checksum_error(server, archive_bytes, tmp_path,
                                                         tiny_dataset):
    archive = tiny_dataset("https://example.org/official/tiny.zip")
    server.files["/mirror/tiny.zip"] = archive_bytes[:-100]  # complete answer, wrong file
    with pytest.raises(ChecksumError) as err:
        fetch_dataset("tiny", root=tmp_path, mirror=server.url("mirror/"), progress=False)
    msg = str(err.value)
    assert "not the expected file" in msg and "resume" not in msg
    assert archive.url in msg and archive.md5 in msg  # where to get the right one
    assert (tmp_path / "downloads" / "tiny.zip.bad").exists()


def test_offline_message_lists_every_needed_archive(tmp_path):
    mirror = dead_url()
    with pytest.raises(DownloadError) as err:
        fetch_dataset("df2k", root=tmp_path, mirror=mirror, timeout=5, progress=False)
    msg = str(err.value)
    for archive in dl.DATASETS["df2k"]:
        assert archive.url in msg and archive.md5 in msg and archive.size in msg
        assert str((tmp_path / "downloads" / archive.name).resolve()) in msg
    assert f"{mirror}DIV2K_train_HR.zip" in msg  # the URL that was tried
    assert len(msg.splitlines()) < 20
    with pytest.raises(ValueError, match="div2k"):
        fetch_dataset("imagenet", root=tmp_path)

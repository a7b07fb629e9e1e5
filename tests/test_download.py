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

from srlib.data import sources
from srlib.data.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download,
    extract,
    fetch_archives,
    fetch_dataset,
)
from srlib.data.sources import Archive


# ------------------------------------------------------------------------------ server


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=a-[b]` unless told to ignore it."""

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng and srv.honor_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            start = int(m[1])
            end = min(int(m[2]), end) if m[2] else end
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
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


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ data


def png_bytes(seed: int, size=(24, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    return make_zip({f"tiny_HR/{i:04d}.png": png_bytes(i) for i in range(1, 4)})


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----------------------------------------------------------------------------- download


def test_download_verifies_md5_and_is_not_repeated(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    dest = tmp_path / "dl" / "tiny.zip"
    out = download(server.url("tiny.zip"), dest, md5=md5(archive_bytes),
                   expected_size=len(archive_bytes), progress=False)
    assert out == dest and dest.read_bytes() == archive_bytes
    assert not dest.with_name("tiny.zip.part").exists()
    assert server.requests == [{"path": "/tiny.zip", "range": None}]
    download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert len(server.requests) == 1  # complete file with the right md5: no new request


def test_resume_uses_range_request(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    dest = tmp_path / "tiny.zip"
    half = len(archive_bytes) // 2
    dest.with_name("tiny.zip.part").write_bytes(archive_bytes[:half])
    download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert server.requests == [{"path": "/tiny.zip", "range": f"bytes={half}-"}]
    assert dest.read_bytes() == archive_bytes


def test_server_ignoring_range_restarts_from_zero(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    server.honor_range = False
    dest = tmp_path / "tiny.zip"
    dest.with_name("tiny.zip.part").write_bytes(b"x" * 100)  # would corrupt if appended to
    download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert server.requests[0]["range"] == "bytes=100-"
    assert dest.read_bytes() == archive_bytes


def test_oversized_part_is_restarted_after_416(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    dest = tmp_path / "tiny.zip"
    dest.with_name("tiny.zip.part").write_bytes(b"y" * (len(archive_bytes) + 10))
    download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert [r["range"] for r in server.requests] == [f"bytes={len(archive_bytes) + 10}-", None]
    assert dest.read_bytes() == archive_bytes


def test_dropped_connection_keeps_part_and_next_run_resumes(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    server.cut_after = 1000
    dest = tmp_path / "tiny.zip"
    with pytest.raises(DownloadError, match="resume") as err:
        download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert server.url("tiny.zip") in str(err.value)
    part = dest.with_name("tiny.zip.part")
    assert part.read_bytes() == archive_bytes[:1000] and not dest.exists()
    server.cut_after = None
    download(server.url("tiny.zip"), dest, md5=md5(archive_bytes), progress=False)
    assert server.requests[-1]["range"] == "bytes=1000-"
    assert dest.read_bytes() == archive_bytes and not part.exists()


def test_checksum_mismatch_names_both_md5s_and_sets_file_aside(server, archive_bytes,
                                                               tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    dest = tmp_path / "tiny.zip"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        download(server.url("tiny.zip"), dest, md5=wrong, progress=False)
    msg = str(err.value)
    assert wrong in msg and md5(archive_bytes) in msg and str(dest) in msg
    assert "delete" in msg.lower() and "again" in msg
    assert err.value.expected == wrong and err.value.actual == md5(archive_bytes)
    assert not dest.exists() and not dest.with_name("tiny.zip.part").exists()
    assert dest.with_name("tiny.zip.bad").read_bytes() == archive_bytes


def test_bad_manually_placed_file_is_rejected(tmp_path, archive_bytes):
    dest = tmp_path / "tiny.zip"
    dest.write_bytes(archive_bytes[:-1])
    url = f"http://127.0.0.1:{dead_port()}/tiny.zip"
    with pytest.raises(ChecksumError, match="size"):
        download(url, dest, md5=md5(archive_bytes), expected_size=len(archive_bytes),
                 progress=False)
    assert not dest.exists()


def test_unreachable_server_says_where_to_put_the_file(tmp_path):
    url = f"http://127.0.0.1:{dead_port()}/tiny.zip"
    dest = tmp_path / "downloads" / "tiny.zip"
    with pytest.raises(DownloadError) as err:
        download(url, dest, md5="a" * 32, timeout=5, progress=False)
    msg = str(err.value)
    assert url in msg and str(dest.resolve()) in msg and "a" * 32 in msg
    assert not dest.exists()


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/tiny.zip"
        with pytest.raises(DownloadError, match=re.escape(url)):
            download(url, tmp_path / "tiny.zip", timeout=0.3, progress=False)


def test_http_404_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(server.url("missing.zip"), tmp_path / "missing.zip", progress=False)


# ------------------------------------------------------------------------------ extract


def test_extract_zip_once(tmp_path, archive_bytes):
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(archive_bytes)
    out = extract(archive, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (out / "tiny_HR").iterdir()) == [
        "0001.png", "0002.png", "0003.png"]
    archive.unlink()  # a finished folder is recognised without the archive
    assert extract(archive, tmp_path / "out", progress=False) == out
    assert not (tmp_path / "out.partial").exists()


def test_extract_tar(tmp_path):
    archive = tmp_path / "t.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in (1, 2):
            data = png_bytes(i)
            info = tarfile.TarInfo(f"T/T_HR/{i}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = extract(archive, tmp_path / "t", progress=False)
    assert (out / "T" / "T_HR" / "2.png").read_bytes() == png_bytes(2)


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_is_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    info = zipfile.ZipInfo("ok/fine.txt")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, b"fine")
        bad = zipfile.ZipInfo("x")
        bad.filename = name  # ZipInfo() would strip a leading "/"
        zf.writestr(bad, b"evil")
    dest = tmp_path / "sub" / "out"
    with pytest.raises(UnsafeArchiveError, match="evil"):
        extract(archive, dest, progress=False)
    assert not dest.exists() and not dest.with_name("out.partial").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sub" / "evil.txt").exists()


def test_tar_link_escape_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("ok/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="passwd"):
        extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ datasets


def tiny_archive(url: str, data: bytes) -> Archive:
    return Archive(name="tiny.zip", url=url, md5=md5(data), num_images=3,
                   hr_subdir="tiny_HR", size=len(data))


def test_fetch_archives_downloads_extracts_then_reuses(server, archive_bytes, tmp_path):
    server.files["/tiny.zip"] = archive_bytes
    archive = tiny_archive(server.url("tiny.zip"), archive_bytes)
    (hr,) = fetch_archives([archive], root=tmp_path, progress=False)
    assert hr == tmp_path / "downloads" / "extracted" / "tiny" / "tiny_HR"
    assert len(list(hr.glob("*.png"))) == 3
    assert fetch_archives([archive], root=tmp_path, progress=False) == [hr]
    assert len(server.requests) == 1


def test_fetch_archives_uses_manually_placed_archive_offline(archive_bytes, tmp_path):
    archive = tiny_archive(f"http://127.0.0.1:{dead_port()}/tiny.zip", archive_bytes)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "tiny.zip").write_bytes(archive_bytes)
    (hr,) = fetch_archives([archive], root=tmp_path, progress=False)
    assert len(list(hr.glob("*.png"))) == 3


def test_fetch_archives_accepts_hand_unpacked_folder(archive_bytes, tmp_path):
    archive = tiny_archive(f"http://127.0.0.1:{dead_port()}/tiny.zip", archive_bytes)
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        zf.extractall(tmp_path / "downloads" / "extracted" / "tiny")
    (hr,) = fetch_archives([archive], root=tmp_path, progress=False)
    assert hr.is_dir()


def test_offline_message_lists_every_needed_archive(tmp_path):
    mirror = f"http://127.0.0.1:{dead_port()}"
    with pytest.raises(DownloadError) as err:
        fetch_dataset("df2k", root=tmp_path, mirror=mirror, timeout=5, progress=False)
    msg = str(err.value)
    for name in ("DIV2K_train_HR.zip", "Flickr2K.tar"):
        archive = sources.ARCHIVES[name]
        assert archive.url in msg and archive.md5 in msg
        assert str((tmp_path / "downloads" / name).resolve()) in msg
    assert f"{mirror}/DIV2K_train_HR.zip" in msg  # the URL that was tried
    assert "DIV2K_valid_HR" not in msg  # training needs only these two


def test_catalogue_is_consistent():
    assert [a.name for a in sources.archives_for("div2k")] == ["DIV2K_train_HR.zip"]
    assert [a.name for a in sources.archives_for("df2k")] == [
        "DIV2K_train_HR.zip", "Flickr2K.tar"]
    assert [a.name for a in sources.archives_for("df2k", "valid")] == ["DIV2K_valid_HR.zip"]
    assert sources.ARCHIVES["DIV2K_train_HR.zip"].size == 3_530_603_713
    assert sources.ARCHIVES["Flickr2K.tar"].stem == "Flickr2K"
    with pytest.raises(ValueError, match="div2k"):
        sources.get_dataset("imagenet")

"""Fetch and unpack the training archives, robustly enough for multi-GB files.

DIV2K is 3.5 GB and Flickr2K 11.6 GB, so a download must survive interruptions (resume
with an HTTP Range request), never hand a truncated or corrupt file to later stages (md5
check, atomic rename) and, on machines without internet, say exactly which file to fetch by
hand and where to put it so the next run picks it up.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from tqdm import tqdm

from srlib.data.sources import Archive, archives_for

__all__ = [
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "download",
    "md5sum",
    "extract",
    "fetch_archives",
    "fetch_dataset",
]

CHUNK = 1 << 20
USER_AGENT = "srlib-downloader/0.1 (python urllib)"
EXTRACTED_MARKER = ".srlib_extracted.json"


class DownloadError(RuntimeError):
    """The file could not be fetched; the message says how to fetch it by hand."""


class ChecksumError(DownloadError):
    """A file's md5 (or size) is not the catalogue's; the file has been set aside."""

    def __init__(self, message: str, path: Path, expected: str, actual: str):
        super().__init__(message)
        self.path, self.expected, self.actual = path, expected, actual


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (zip-slip)."""


# ----------------------------------------------------------------------------- download


def md5sum(path: str | os.PathLike, progress: bool = False) -> str:
    """md5 of a file, read in chunks so multi-GB archives do not fill memory."""
    h = hashlib.md5()
    _hash_file_into(h, Path(path), progress)
    return h.hexdigest()


def _hash_file_into(h, path: Path, progress: bool = False) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"md5 {path.name}",
        disable=not progress or size < 64 * CHUNK, leave=False,
    ) as bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _manual_hint(url: str, dest: Path, md5: str | None, size: int | None) -> str:
    facts = [f"md5 {md5}"] if md5 else []
    if size is not None:
        facts.append(f"{size:,} bytes")
    extra = f" ({', '.join(facts)})" if facts else ""
    return (
        f"To fetch it by hand, download\n    {url}{extra}\n"
        f"and put the file at\n    {dest.resolve()}\n"
        f"The next run finds it there (checking its md5) instead of downloading."
    )


def _set_aside(path: Path, dest: Path) -> Path:
    """Move a bad file out of the way so no later stage can mistake it for the real one."""
    bad = dest.with_name(dest.name + ".bad")
    os.replace(path, bad)
    return bad


def _check_file(path: Path, dest: Path, url: str, md5: str | None,
                expected_size: int | None, actual_md5: str | None = None,
                progress: bool = False) -> None:
    """Raise ChecksumError (after setting the file aside) unless size and md5 are right."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        problem, expected, actual = "size", f"{expected_size:,} bytes", f"{size:,} bytes"
    elif md5 is not None:
        actual_md5 = actual_md5 or md5sum(path, progress)
        if actual_md5.lower() == md5.lower():
            return
        problem, expected, actual = "md5", md5.lower(), actual_md5
    else:
        return
    bad = _set_aside(path, dest)
    raise ChecksumError(
        f"Checksum mismatch for {dest}: expected {problem} {expected}, got {actual}.\n"
        f"The bad file was moved aside to {bad} so it is never used (delete it).\n"
        f"Run again to download it afresh, or fetch it by hand from {url} "
        f"and put it at {dest.resolve()}.",
        path=dest, expected=expected, actual=actual,
    )


def _open(url: str, offset: int, timeout: float, dest: Path, md5, size):
    """Open the URL (asking for bytes from `offset` on); None means 416, restart from 0."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            e.close()
            return None
        reason = f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = str(e.reason)
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, bad status lines
        reason = f"{type(e).__name__}: {e}"
    raise DownloadError(
        f"Could not download {url}: {reason}.\n" + _manual_hint(url, dest, md5, size)
    )


def _start_of(response, offset: int) -> int | None:
    """Byte position the body starts at: 0 (full file), `offset` (honoured Range), None (odd)."""
    status = getattr(response, "status", None) or 200
    if status == 200:
        return 0
    if status == 206:
        match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return offset
    return None


def _stream(url: str, part: Path, dest: Path, md5, expected_size, timeout, progress) -> str:
    """Download into `part` (resuming it when possible) and return the md5 of the result."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size and offset:
        return md5sum(part, progress)  # finished earlier but not renamed yet
    for _ in range(3):
        response = _open(url, offset, timeout, dest, md5, expected_size)
        if response is None:  # 416: our .part is not a prefix the server recognises
            part.unlink(missing_ok=True)
            offset = 0
            continue
        with response:
            start = _start_of(response, offset)
            if start is None:  # a 206 for some other range: start over cleanly
                part.unlink(missing_ok=True)
                offset = 0
                continue
            hasher = hashlib.md5()
            if start:
                _hash_file_into(hasher, part, progress)
            offset = start  # 0 when the server ignored our Range: restart the file
            return _copy_body(response, part, hasher, offset, url, dest, md5,
                              expected_size, progress)
    raise DownloadError(f"Could not download {url}: the server kept answering with an "
                        "unusable byte range.\n" + _manual_hint(url, dest, md5, expected_size))


def _copy_body(response, part: Path, hasher, offset: int, url, dest, md5, expected_size,
               progress) -> str:
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    total = offset + length if length is not None else expected_size
    received = 0
    with open(part, "ab" if offset else "wb") as f, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=dest.name, disable=not progress,
    ) as bar:
        try:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            f.flush()
            raise _interrupted(url, part, dest, md5, expected_size, f"{type(e).__name__}: {e}")
    if length is not None and received < length:
        raise _interrupted(url, part, dest, md5, expected_size,
                           f"connection closed after {offset + received:,} of {total:,} bytes")
    return hasher.hexdigest()


def _interrupted(url, part, dest, md5, size, reason) -> DownloadError:
    return DownloadError(
        f"Download of {url} was interrupted ({reason}).\n"
        f"The partial file is kept at {part}; run again to resume it.\n"
        + _manual_hint(url, dest, md5, size)
    )


def download(url: str, dest: str | os.PathLike, md5: str | None = None,
             expected_size: int | None = None, timeout: float = 30,
             progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming `dest.part`, verifying md5/size, renaming atomically.

    An existing `dest` that passes the checks is kept (manually placed files work this way);
    one that fails is set aside and ChecksumError raised. Network problems raise
    DownloadError with instructions for a manual download.
    """
    dest = Path(dest)
    if dest.exists():
        _check_file(dest, dest, url, md5, expected_size, progress=progress)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    actual = _stream(url, part, dest, md5, expected_size, timeout, progress)
    size = part.stat().st_size
    if expected_size is not None and size < expected_size:
        raise _interrupted(url, part, dest, md5, expected_size,
                           f"got {size:,} of {expected_size:,} bytes")
    _check_file(part, dest, url, md5, expected_size, actual_md5=actual)
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------ extract


def _member_target(root: Path, name: str, archive: Path) -> Path:
    """Where `name` would be written, refusing anything that escapes `root`."""
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", clean) or ".." in pure.parts:
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} would be written outside "
            f"the destination folder (absolute path or '..')")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: member {name!r} escapes the destination folder")
    return target


def _check_tar_member(root: Path, member: tarfile.TarInfo, archive: Path) -> None:
    target = _member_target(root, member.name, archive)
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        base = target.parent if member.issym() else root
        if PurePosixPath(link).is_absolute() or not (base / link).resolve().is_relative_to(
                root.resolve()):
            raise UnsafeArchiveError(
                f"refusing to extract {archive}: link {member.name!r} -> {member.linkname!r} "
                f"points outside the destination folder")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"refusing to extract {archive}: {member.name!r} is a device or fifo")


def _extract_zip(archive: Path, tmp: Path, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:  # check everything before writing anything
            _member_target(tmp, info.filename, archive)
        for info in tqdm(members, desc=f"unzip {archive.name}", unit="file",
                         disable=not progress):
            zf.extract(info, tmp)


def _extract_tar(archive: Path, tmp: Path, progress: bool) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            _check_tar_member(tmp, member, archive)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for member in tqdm(members, desc=f"untar {archive.name}", unit="file",
                           disable=not progress):
            tf.extract(member, tmp, **kwargs)


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike,
            progress: bool = True) -> Path:
    """Unpack a zip or tar into `dest_dir`, all or nothing, and only once.

    Members are unpacked into a sibling temporary folder that is renamed to `dest_dir` at
    the end, with a marker file inside, so an interrupted run leaves no half folder behind
    and a finished one is recognised instantly.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if (dest_dir / EXTRACTED_MARKER).exists():
        return dest_dir
    if dest_dir.exists():
        raise FileExistsError(
            f"{dest_dir} exists but was not made by srlib's extract (no {EXTRACTED_MARKER}); "
            f"delete it and run again")
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if zipfile.is_zipfile(archive):
        unpack = _extract_zip
    elif tarfile.is_tarfile(archive):
        unpack = _extract_tar
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    tmp = dest_dir.with_name(dest_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    tmp.mkdir(parents=True)
    try:
        unpack(archive, tmp, progress)
        marker = {"archive": archive.name, "bytes": archive.stat().st_size}
        (tmp / EXTRACTED_MARKER).write_text(json.dumps(marker) + "\n")
        os.replace(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest_dir


# ---------------------------------------------------------------------------- datasets


def _count_images(folder: Path) -> int:
    from srlib.data.io import list_images

    try:
        return len(list_images(folder))
    except FileNotFoundError:  # missing or empty
        return 0


def _offline_message(missing: Sequence[tuple[Archive, Path, Path]], first_error: str,
                     what: str) -> str:
    lines = [
        f"Could not download {len(missing)} archive(s) needed for {what}.",
        f"First error: {first_error}",
        "",
        "If this machine has no internet access, download each file below elsewhere and "
        "copy it to the path shown; the next run checks its md5 and uses it:",
    ]
    for archive, path, hr_dir in missing:
        size = f"{archive.size:,} bytes" if archive.size else f"about {archive.approx_size}"
        lines += [
            f"  - {archive.name} ({archive.num_images:,} images, {size})",
            f"      url: {archive.url}",
            f"      md5: {archive.md5}",
            f"      put: {path.resolve()}",
            f"      (or unpack it yourself so its HR images are in {hr_dir.resolve()})",
        ]
    return "\n".join(lines)


def fetch_archives(archives: Iterable[Archive], root: str | os.PathLike = "data",
                   mirror: str | None = None, timeout: float = 30, progress: bool = True,
                   what: str = "this dataset") -> list[Path]:
    """Make every archive's HR folder available under `root/downloads/` and return them.

    Per archive, the first of these that works is used: an already unpacked folder, an
    archive file already in `root/downloads/` (md5-checked), a download (from `mirror` +
    file name when given). After the first network failure no further downloads are tried;
    one DownloadError then lists every archive still missing.
    """
    downloads = Path(root) / "downloads"
    folders: list[Path] = []
    missing: list[tuple[Archive, Path, Path]] = []
    first_error = ""
    for archive in archives:
        unpacked = downloads / "extracted" / archive.stem
        hr_dir = unpacked / archive.hr_subdir
        path = downloads / archive.name
        if (unpacked / EXTRACTED_MARKER).exists() or (
                _count_images(hr_dir) == archive.num_images):  # unpacked by us or by hand
            folders.append(hr_dir)
            continue
        if missing and not path.exists():  # offline already: just list it
            missing.append((archive, path, hr_dir))
            continue
        url = f"{mirror.rstrip('/')}/{archive.name}" if mirror else archive.url
        try:
            download(url, path, md5=archive.md5, expected_size=archive.size,
                     timeout=timeout, progress=progress)
        except ChecksumError:
            raise
        except DownloadError as e:
            first_error = first_error or str(e).splitlines()[0]
            missing.append((archive, path, hr_dir))
            continue
        extract(path, unpacked, progress=progress)
        if not hr_dir.is_dir():
            raise DownloadError(f"{path} unpacked to {unpacked}, but it has no folder "
                                f"{archive.hr_subdir!r} with the HR images")
        folders.append(hr_dir)
    if missing:
        raise DownloadError(_offline_message(missing, first_error, what))
    return folders


def fetch_dataset(name: str, root: str | os.PathLike = "data", split: str = "train",
                  mirror: str | None = None, timeout: float = 30,
                  progress: bool = True) -> list[Path]:
    """Download (or reuse) and unpack a catalogued dataset; return its HR image folder(s).

    `split="train"` gives the folders cut into training sub-images ("df2k": DIV2K train and
    Flickr2K); `split="valid"` gives the DIV2K validation HR folder.
    """
    return fetch_archives(archives_for(name, split), root=root, mirror=mirror,
                          timeout=timeout, progress=progress,
                          what=f"dataset {name!r} ({split})")

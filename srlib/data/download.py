"""Fetch and unpack the DIV2K (3.5 GB) and Flickr2K (11.6 GB) archives. A download resumes
after an interruption (HTTP Range); a file is used only once its md5 matches (a bad one is set
aside); without internet, one message lists every file to fetch by hand and where to put it."""
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """An archive could not be fetched or unpacked; the message says what to do."""


class ChecksumError(DownloadError):
    """A file is not the catalogue's (wrong file or corrupt); it has been set aside."""


@dataclass(frozen=True)
class Archive:
    """One downloadable file, with what a person needs to fetch it by hand."""
    name: str  # also its file name in <root>/downloads/
    url: str
    md5: str
    size: str  # for people, in messages
    num_images: int
    hr_subdir: str  # where its HR images are once unpacked


DIV2K_TRAIN = Archive(
    "DIV2K_train_HR.zip", "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
    "bdc2d9338d4e574fe81bf7d158758658", "3,530,603,713 bytes", 800, "DIV2K_train_HR")
FLICKR2K = Archive(
    "Flickr2K.tar", "https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
    "5d3f39443d5e9489bff8963f8f26cb03", "about 11.6 GB", 2650, "Flickr2K/Flickr2K_HR")

# dataset name -> the archives whose HR images are cut into its training sub-images
DATASETS = {"div2k": (DIV2K_TRAIN,), "df2k": (DIV2K_TRAIN, FLICKR2K)}


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Download `url` into `part`, continuing what an earlier run left there."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "srlib-downloader/0.2"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after our bytes: the md5 check judges them
            return
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # refused, no DNS, timeout, reset
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from None
    start = offset if response.status == 206 else 0  # 200: the server ignored the Range
    length = int(response.headers.get("Content-Length") or 0) or None
    reason = "the connection closed early"
    with response, open(part, "ab" if start else "wb") as f, tqdm(
            total=start + length if length else None, initial=start, unit="B",
            unit_scale=True, unit_divisor=1024, desc=part.name, disable=not progress) as bar:
        try:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
            if length is None or f.tell() == start + length:
                return
        except (OSError, http.client.HTTPException) as e:
            reason = f"{type(e).__name__}: {e}"
    raise DownloadError(f"download of {url} stopped after {part.stat().st_size:,} bytes "
                        f"({reason}); {part} is kept: run again to resume it")


def _verify(path: Path, dest: Path, md5: str, origin: str, progress: bool) -> None:
    """Set `path` aside as `dest.bad` and raise unless its md5 is `md5`."""
    digest = hashlib.md5()  # in chunks, so a multi-GB archive does not fill memory
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, desc=f"md5 {path.name}", unit="B",
                                     unit_scale=True, leave=False, disable=not progress) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() == md5:
        return
    bad = dest.with_name(dest.name + ".bad")
    os.replace(path, bad)
    raise ChecksumError(
        f"{origin} is not the expected file (wrong file or corrupt): its md5 is "
        f"{digest.hexdigest()}, expected {md5}. It was moved aside to {bad}; delete it. Run again "
        f"to download it afresh, or fetch the right file by hand and put it at {dest.resolve()}.")


def download(url: str, dest: str | os.PathLike, md5: str, timeout: float = 30,
             progress: bool = True) -> Path:
    """Download `url` to `dest` (by way of `dest.part`) unless `dest` already has the md5."""
    dest = Path(dest)
    if dest.exists():  # downloaded earlier, or placed by hand
        _verify(dest, dest, md5, str(dest), progress)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch(url, part, timeout, progress)
    _verify(part, dest, md5, f"the file from {url}", progress)
    os.replace(part, dest)
    return dest


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Unpack a zip or tar into `dest_dir`, which appears only once complete. zipfile keeps every
    member inside the folder; tarfile's "data" filter refuses members or links pointing out."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists():
        return dest_dir
    tmp = dest_dir.with_name(dest_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
    tmp.mkdir(parents=True)
    bar = {"desc": f"unpack {archive.name}", "unit": "file", "disable": not progress}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp, members=tqdm(zf.infolist(), **bar))
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, members=tqdm(tf.getmembers(), **bar), filter="data")
        os.replace(tmp, dest_dir)
    except tarfile.FilterError as e:
        raise DownloadError(f"refusing to unpack {archive}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after success; nothing kept after failure
    return dest_dir


def _by_hand(archive: Archive, path: Path, hr_dir: Path) -> str:
    return (f"  - {archive.name} ({archive.num_images:,} images, {archive.size})\n"
            f"      url: {archive.url}\n      md5: {archive.md5}\n      put: {path.resolve()}\n"
            f"      (or unpack it yourself so that its HR images are in {hr_dir.resolve()})")


def fetch_dataset(name: str, root: str | os.PathLike = "data", mirror: str | None = None,
                  timeout: float = 30, progress: bool = True) -> list[Path]:
    """A dataset's HR image folders under `root/downloads/`, per archive from the first source that
    works: a folder already unpacked, the archive in `root/downloads/`, a download from the
    catalogue URL or `mirror` + file name. After a network failure nothing more is downloaded."""
    if name.lower() not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if mirror is not None and not (urllib.parse.urlparse(mirror).scheme in ("http", "https")
                                   and urllib.parse.urlparse(mirror).netloc):
        raise DownloadError(f"--mirror {mirror!r} is not an http(s) URL; give a base URL such "
                            "as https://example.org/div2k (the archive names are appended)")
    downloads = Path(root) / "downloads"
    folders, missing, first_error = [], [], ""
    for archive in DATASETS[name.lower()]:
        path = downloads / archive.name
        unpacked = downloads / "extracted" / archive.name.split(".")[0]
        hr_dir = unpacked / archive.hr_subdir
        if len(list(hr_dir.glob("*.png"))) != archive.num_images:
            if missing and not path.exists():  # offline already: only list it
                missing.append(_by_hand(archive, path, hr_dir))
                continue
            url = f"{mirror.rstrip('/')}/{archive.name}" if mirror else archive.url
            try:
                download(url, path, archive.md5, timeout, progress)
            except ChecksumError as e:
                raise ChecksumError(
                    f"{e}\nThe right file:\n{_by_hand(archive, path, hr_dir)}") from None
            except DownloadError as e:
                first_error = first_error or str(e)
                missing.append(_by_hand(archive, path, hr_dir))
                continue
            extract(path, unpacked, progress)
            found = len(list(hr_dir.glob("*.png")))
            if found != archive.num_images:
                raise DownloadError(f"{hr_dir} holds {found} PNG images, not {archive.num_images} "
                                    f"({archive.name}): delete {unpacked} and run again")
        folders.append(hr_dir)
    if missing:
        raise DownloadError("\n".join([
            f"Could not download {len(missing)} archive(s) for {name}: {first_error}",
            "Without internet here, fetch each file below elsewhere and copy it to the path "
            "shown; the next run checks its md5 and uses it:", *missing]))
    return folders

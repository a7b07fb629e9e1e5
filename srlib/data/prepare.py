"""Cut large HR images (DIV2K, Flickr2K) into sub-images with their x`scale` LR, once.

Why: decoding a 2K PNG to take one 96x96 patch makes training I/O-bound, so (as BasicSR's
`extract_subimages.py` does) each HR image is cut once into overlapping crop_size crops,
and each crop's LR is made offline with the same MATLAB bicubic as evaluation (`make_lr`).
The job takes long on big sets, so it is resumable: crops are written atomically and
an append-only progress log records each finished image; `manifest.json` marks a
finished folder, which later runs skip after a quick check.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from srlib.data.io import ImageReadError, list_images, load_image, save_image

__all__ = [
    "SubimageSet",
    "crop_positions",
    "expected_subimage_count",
    "prepare_subimages",
    "prepare_dataset",
]

MANIFEST = "manifest.json"
PROGRESS_LOG = ".progress.jsonl"
LR_METHOD = "matlab_bicubic"  # recorded so a folder made another way is not mixed in


@dataclass
class SubimageSet:
    """Where a prepared folder's crops are, and what it holds."""

    out_dir: Path
    hr_dir: Path
    lr_dir: Path
    num_images: int
    num_crops: int
    skipped: list[dict] = field(default_factory=list)  # corrupt files: {"file", "reason"}

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Top (or left) offsets of the crops along one side, BasicSR's convention.

    range(0, length - crop_size + 1, step), plus a last crop flush with the far edge when
    the strip it would otherwise miss is wider than `thresh_size`. A side shorter than
    `crop_size` gives no crop.
    """
    if length < crop_size:
        return []
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def expected_subimage_count(h: int, w: int, crop_size: int, step: int,
                            thresh_size: int = 0) -> int:
    """Number of crops one h x w image gives (sum over DIV2K: 32,592 at 480/240/0)."""
    return (len(crop_positions(h, crop_size, step, thresh_size))
            * len(crop_positions(w, crop_size, step, thresh_size)))


def _crop_name(stem: str, index: int) -> str:
    return f"{stem}_s{index:03d}.png"


def _cut_image(job: tuple) -> tuple[str, str, int | None, str | None]:
    """Worker: write every crop of one image; (stem, path, count or None, error reason)."""
    from srlib.evaluate import make_lr  # imported here: keeps module import light

    path, stem, hr_dir, lr_dir, crop_size, step, thresh_size, scale = job
    try:
        img = load_image(path)
    except ImageReadError as e:
        return stem, str(path), None, e.reason
    h, w = img.shape[:2]
    index = 0
    for y in crop_positions(h, crop_size, step, thresh_size):
        for x in crop_positions(w, crop_size, step, thresh_size):
            index += 1
            crop = np.ascontiguousarray(img[y:y + crop_size, x:x + crop_size])
            _, lr = make_lr(crop, scale)
            save_image(Path(lr_dir) / _crop_name(stem, index), lr)
            save_image(Path(hr_dir) / _crop_name(stem, index), crop)
    return stem, str(path), index, None


def _worker_init() -> None:
    """One torch thread per worker process: the pool already uses every core."""
    import torch

    torch.set_num_threads(1)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _mismatch_error(out_dir: Path, what: str) -> ValueError:
    return ValueError(
        f"{out_dir} already holds sub-images made {what}. Delete that folder to remake it, "
        f"or choose another output folder.")


def _check_params(out_dir: Path, have: dict, want: dict) -> None:
    if have != want:
        diff = ", ".join(f"{k}={have.get(k)!r} there but {want.get(k)!r} asked"
                         for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k))
        raise _mismatch_error(out_dir, f"with other parameters ({diff})")


def _source_images(hr_folder) -> dict[str, Path]:
    """stem -> path over one or several folders; stems must be unique (they name crops)."""
    folders = [hr_folder] if isinstance(hr_folder, (str, os.PathLike)) else list(hr_folder)
    images: dict[str, Path] = {}
    for folder in folders:
        for path in list_images(folder):
            if path.stem in images:
                raise ValueError(f"two source images share the name {path.stem!r}: "
                                 f"{images[path.stem]} and {path}; crops would collide")
            images[path.stem] = path
    return images


def _read_log(log: Path, out_dir: Path, params: dict) -> dict[str, int]:
    """Finished images from the progress log (a torn last line is ignored)."""
    done: dict[str, int] = {}
    if not log.exists():
        return done
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "params" in entry:
            _check_params(out_dir, entry["params"], params)
        elif "image" in entry:
            done[entry["image"]] = entry["crops"]
    return done


def _crops_present(done: dict[str, int], hr_dir: Path, lr_dir: Path) -> dict[str, int]:
    """Keep only images whose every HR and LR crop is on disk (one listing per folder)."""
    names = [set(os.listdir(d)) if d.is_dir() else set() for d in (hr_dir, lr_dir)]
    return {stem: n for stem, n in done.items()
            if all(_crop_name(stem, i) in s for s in names for i in range(1, n + 1))}


def _finished(out_dir: Path, params: dict, stems: set[str], hr_dir: Path,
              lr_dir: Path) -> SubimageSet | None:
    """The finished set if `manifest.json` matches this request and its crops are all there."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    _check_params(out_dir, manifest["params"], params)
    listed = set(manifest["per_image"]) | {s["stem"] for s in manifest["skipped_corrupt"]}
    if listed != stems:
        extra, gone = sorted(stems - listed), sorted(listed - stems)
        raise _mismatch_error(
            out_dir, f"from another set of images ({len(extra)} source images not in its "
            f"manifest, e.g. {extra[:3]}; {len(gone)} listed there but not in the source, "
            f"e.g. {gone[:3]})")
    if len(_crops_present(manifest["per_image"], hr_dir, lr_dir)) != len(manifest["per_image"]):
        return None  # some crops were deleted: resume
    return SubimageSet(out_dir, hr_dir, lr_dir, manifest["images"], manifest["crops"],
                       manifest["skipped_corrupt"])


def prepare_subimages(hr_folder, out_dir, crop_size: int = 480, step: int = 240,
                      thresh_size: int = 0, scale: int = 4, workers: int | None = None,
                      progress: bool = True, skip_corrupt: bool = False) -> SubimageSet:
    """Cut every image of `hr_folder` (a folder or a list of them) into sub-images.

    Writes `out_dir/HR/<stem>_sNNN.png` and `out_dir/LR_x<scale>/<stem>_sNNN.png`
    (`make_lr` of the HR crop) and finally `out_dir/manifest.json`. Re-running is cheap
    (finished: skipped; interrupted: resumes). A corrupt image raises ImageReadError
    naming it, unless `skip_corrupt`, which warns and lists it in the manifest.
    """
    if crop_size <= 0 or step <= 0 or thresh_size < 0 or scale <= 0:
        raise ValueError("crop_size, step and scale must be positive, thresh_size >= 0")
    if crop_size % scale:
        raise ValueError(f"crop_size {crop_size} must be a multiple of scale {scale}")
    out_dir = Path(out_dir)
    hr_dir, lr_dir = out_dir / "HR", out_dir / f"LR_x{scale}"
    params = {"crop_size": crop_size, "step": step, "thresh_size": thresh_size,
              "scale": scale, "lr_method": LR_METHOD}
    images = _source_images(hr_folder)
    finished = _finished(out_dir, params, set(images), hr_dir, lr_dir)
    if finished is not None:
        return finished

    log = out_dir / PROGRESS_LOG
    done = _read_log(log, out_dir, params)
    if (out_dir / MANIFEST).exists():  # finished once, then crops deleted: trust it too
        done.update(json.loads((out_dir / MANIFEST).read_text())["per_image"])
    done = _crops_present({s: n for s, n in done.items() if s in images}, hr_dir, lr_dir)
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    if not log.exists():
        with open(log, "a") as f:
            f.write(json.dumps({"params": params}) + "\n")

    jobs = [(str(p), stem, str(hr_dir), str(lr_dir), crop_size, step, thresh_size, scale)
            for stem, p in images.items() if stem not in done]
    skipped = _run_jobs(jobs, log, done, workers, progress, skip_corrupt, len(images))

    per_image = {stem: done[stem] for stem in sorted(done)}
    manifest = {
        "format": 1,
        "params": params,
        "sources": sorted({str(p.parent.resolve()) for p in images.values()}),
        "images": len(per_image),
        "crops": sum(per_image.values()),
        "per_image": per_image,
        "skipped_corrupt": skipped,
    }
    _write_json_atomic(out_dir / MANIFEST, manifest)
    return SubimageSet(out_dir, hr_dir, lr_dir, manifest["images"], manifest["crops"], skipped)


def _run_jobs(jobs: list[tuple], log: Path, done: dict[str, int], workers: int | None,
              progress: bool, skip_corrupt: bool, total: int) -> list[dict]:
    """Run the crop jobs (in a process pool when workers > 1), logging each finished image."""
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    skipped: list[dict] = []
    bar = tqdm(total=total, initial=total - len(jobs), unit="img", desc="sub-images",
               disable=not progress)
    pool = (multiprocessing.Pool(min(workers, len(jobs)), initializer=_worker_init)
            if workers > 1 and len(jobs) > 1 else None)
    try:
        results = pool.imap_unordered(_cut_image, jobs) if pool else map(_cut_image, jobs)
        with open(log, "a") as f:
            for stem, path, count, reason in results:
                bar.update(1)
                if count is None:
                    if not skip_corrupt:
                        raise ImageReadError(path, reason)
                    warnings.warn(f"skipping corrupt image {path}: {reason}", stacklevel=3)
                    skipped.append({"stem": stem, "file": path, "reason": reason})
                    continue
                done[stem] = count
                f.write(json.dumps({"image": stem, "crops": count}) + "\n")
                f.flush()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return sorted(skipped, key=lambda s: s["stem"])


def prepare_dataset(name: str, root: str | os.PathLike = "data", crop_size: int = 480,
                    step: int = 240, thresh_size: int = 0, scale: int = 4,
                    workers: int | None = None, progress: bool = True,
                    skip_corrupt: bool = False, mirror: str | None = None,
                    timeout: float = 30) -> SubimageSet:
    """Fetch a catalogued dataset and cut it into `root/<name>/HR` and `LR_x<scale>`.

    "df2k" combines DIV2K train and Flickr2K into one folder (their file names differ).
    """
    from srlib.data.download import fetch_dataset

    folders: Sequence[Path] = fetch_dataset(name, root=root, split="train", mirror=mirror,
                                            timeout=timeout, progress=progress)
    return prepare_subimages(folders, Path(root) / name.lower(), crop_size=crop_size,
                             step=step, thresh_size=thresh_size, scale=scale,
                             workers=workers, progress=progress, skip_corrupt=skip_corrupt)

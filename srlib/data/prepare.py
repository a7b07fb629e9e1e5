"""Cut large HR images (DIV2K, Flickr2K) once into overlapping sub-images with their x`scale`
LR (`make_lr`, as evaluation), as BasicSR's `extract_subimages.py` does: decoding a 2K PNG per
96x96 patch makes training I/O-bound. Resumable: crops are written atomically, a re-run cuts
only images whose crops are not all on disk; `manifest.json`, written last, says what is there."""
import itertools
import json
import multiprocessing
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srlib.data.download import fetch_dataset
from srlib.data.imresize import make_lr
from srlib.data.io import image_size, list_images, load_image, save_image, write_text_atomic

MANIFEST = "manifest.json"
STARTED = ".params.json"  # the settings of a run that has not finished yet
LR_METHOD = "matlab_bicubic_replicate"  # recorded: a folder made another way is not mixed in


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Crop offsets along one side, as BasicSR: every `step`, plus one flush with the far edge
    when the strip left over is wider than `thresh_size`. A short side gives no crop."""
    if length < crop_size:
        return []
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def _crop_name(stem: str, index: int) -> str:
    return f"{stem}_s{index:03d}.png"


def _cut_image(job: tuple) -> None:
    """Write every HR crop of one image and its LR (in a worker process when there are several)."""
    path, stem, out_dir, crop_size, step, thresh_size, scale = job
    img = load_image(path)
    ys, xs = (crop_positions(n, crop_size, step, thresh_size) for n in img.shape[:2])
    for index, (y, x) in enumerate(itertools.product(ys, xs), start=1):  # row by row
        crop = np.ascontiguousarray(img[y:y + crop_size, x:x + crop_size])
        save_image(out_dir / f"LR_x{scale}" / _crop_name(stem, index), make_lr(crop, scale)[1])
        save_image(out_dir / "HR" / _crop_name(stem, index), crop)


def prepare_subimages(hr_folders: str | os.PathLike | Sequence[str | os.PathLike],
                      out_dir: str | os.PathLike, crop_size: int = 480, step: int = 240,
                      thresh_size: int = 0, scale: int = 4, workers: int | None = None,
                      progress: bool = True) -> Path:
    """Cut every image of `hr_folders` (one or several) into `out_dir/HR` and `LR_x<scale>` as
    `<stem>_sNNN.png`; a re-run of a finished folder writes nothing."""
    if crop_size % scale:
        raise ValueError(f"crop_size {crop_size} must be a multiple of scale {scale}")
    if isinstance(hr_folders, (str, os.PathLike)):
        hr_folders = [hr_folders]
    hr_folders, out_dir = [Path(folder) for folder in hr_folders], Path(out_dir)
    params = {"crop_size": crop_size, "step": step, "thresh_size": thresh_size,
              "scale": scale, "lr_method": LR_METHOD}
    images: dict[str, Path] = {}  # stems must be unique: they name the crops
    for path in (p for folder in hr_folders for p in list_images(folder)):
        if images.setdefault(path.stem, path) != path:
            raise ValueError(f"two source images are named {path.stem!r} "
                             f"({images[path.stem]}, {path}): their crops would collide")
    counts = {}  # from the headers alone: a re-run need not decode finished images
    for stem, path in images.items():
        ys, xs = (crop_positions(n, crop_size, step, thresh_size) for n in image_size(path))
        counts[stem] = len(ys) * len(xs)
    if (out_dir / MANIFEST).exists():  # crops made with other settings are never mixed in
        have = json.loads((out_dir / MANIFEST).read_text())["params"]
    elif (out_dir / STARTED).exists():  # an interrupted run's
        have = json.loads((out_dir / STARTED).read_text())
    else:
        have = params
        write_text_atomic(out_dir / STARTED, json.dumps(params) + "\n")
    if have != params:
        raise ValueError(f"{out_dir} holds sub-images made with {have}, not {params}. "
                         "Delete that folder to remake it, or choose another output folder.")
    for folder in ("HR", f"LR_x{scale}"):
        (out_dir / folder).mkdir(exist_ok=True)
    on_disk = set(os.listdir(out_dir / "HR")) & set(os.listdir(out_dir / f"LR_x{scale}"))
    jobs = [(images[stem], stem, out_dir, crop_size, step, thresh_size, scale)
            for stem, count in counts.items()
            if not all(_crop_name(stem, i) in on_disk for i in range(1, count + 1))]

    workers = min(workers or min(4, os.cpu_count() or 1), len(jobs))
    pool = multiprocessing.Pool(workers) if workers > 1 else nullcontext()
    with pool, tqdm(total=len(images), initial=len(images) - len(jobs), unit="img",
                    desc="sub-images", disable=not progress) as bar:
        for _ in pool.imap(_cut_image, jobs) if workers > 1 else map(_cut_image, jobs):
            bar.update(1)  # a worker's ImageReadError is raised here, intact

    manifest = json.dumps({
        "format": 1, "params": params, "images": len(counts), "crops": sum(counts.values()),
        "sources": sorted({str(folder.resolve()) for folder in hr_folders}),
        "per_image": counts}, indent=1, sort_keys=True) + "\n"
    if not (out_dir / MANIFEST).exists() or (out_dir / MANIFEST).read_text() != manifest:
        write_text_atomic(out_dir / MANIFEST, manifest)
    (out_dir / STARTED).unlink(missing_ok=True)
    return out_dir


def prepare_dataset(name: str, root: str | os.PathLike = "data", crop_size: int = 480,
                    step: int = 240, workers: int | None = None, mirror: str | None = None,
                    progress: bool = True) -> Path:
    """Fetch a catalogued dataset (see `fetch_dataset`) and cut it into `root/<name>/HR` and
    `LR_x4` ("df2k": DIV2K train and Flickr2K in one folder)."""
    folders = fetch_dataset(name, root, mirror=mirror, progress=progress)
    return prepare_subimages(folders, Path(root) / name.lower(), crop_size, step,
                             workers=workers, progress=progress)

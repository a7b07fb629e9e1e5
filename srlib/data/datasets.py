"""Training and evaluation datasets for x`scale` super-resolution, in two layouts: a plain folder
of HR images (T91, Set5, Set14) whose LR `make_lr` makes, as for evaluation, or a prepared folder
(DIV2K/DF2K sub-images) with same-named files in `HR/` and `LR_x{scale}/`."""
import warnings
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from srlib.config import ConfigError
from srlib.data.augment import dihedral, draw_patch_params
from srlib.data.cache import DecodedCache
from srlib.data.imresize import make_lr
from srlib.data.io import (
    ImageReadError,
    as_rgb,
    image_size,
    list_images,
    load_image,
    to_float_tensor,
)


class PairedPatchDataset(Dataset):
    """Random aligned LR/HR patches for training: item ``(k, seed)`` is a patch of image ``k`` cut
    and flipped as ``seed`` draws (see `sampler`); `cache` decodes the set once into a file (see
    `cache`). With `skip_corrupt`, an image that does not decode is left out, with a warning."""

    def __init__(self, root, patch_size: int = 96, scale: int = 4, augment: bool = True,
                 cache: bool = True, skip_corrupt: bool = False, progress: bool = False):
        if patch_size % scale:
            raise ValueError(f"patch_size={patch_size} is not divisible by scale={scale}")
        self.patch_size, self.scale, self.lr_size = patch_size, scale, patch_size // scale
        self.root, self.augment, self.skip_corrupt = Path(root), augment, skip_corrupt
        self.hr_dir, self.lr_dir = self.root / "HR", self.root / f"LR_x{scale}"
        if not (self.hr_dir.is_dir() and self.lr_dir.is_dir()):  # a plain folder of HR images
            self.hr_dir, self.lr_dir = self.root, None
        self.paths: list[tuple[Path, Path | None]] = []
        self.lr_hw: list[tuple[int, int]] = []  # per image, from the file headers
        small, corrupt = [], []
        for hr_path in list_images(self.hr_dir):
            lr_path = None if self.lr_dir is None else self.lr_dir / hr_path.name
            if lr_path is not None and not lr_path.is_file():
                raise FileNotFoundError(f"no LR file {lr_path} for HR image {hr_path}")
            try:  # sizes from the headers first: a tiny image is skipped before it is resized
                lr_hw = self._lr_hw(hr_path, lr_path)
            except ImageReadError as err:
                if not skip_corrupt:
                    raise
                corrupt.append(str(err))
                continue
            if min(lr_hw) < self.lr_size:
                small.append(hr_path.name)
                continue
            self.paths.append((hr_path, lr_path))
            self.lr_hw.append(lr_hw)
        if corrupt:
            warnings.warn(f"skipped {len(corrupt)} unreadable image(s) in {self.hr_dir}: "
                          + "; ".join(corrupt), stacklevel=2)
        if small:
            warnings.warn(f"skipped {len(small)} image(s) in {self.hr_dir} smaller than "
                          f"patch_size={patch_size}: " + ", ".join(small), stacklevel=2)
        self._check_usable(len(small), len(corrupt))
        self._bad: set[int] = set()  # images found corrupt at their first read (skip_corrupt)
        self._cache = (DecodedCache(self.root / ".srlib_cache", self.paths, scale, self._decode,
                                    progress) if cache else None)
        if self._cache is not None and self._cache.skipped:  # corrupt ones found decoding the set
            keep = [k for k in range(len(self.paths)) if k not in self._cache.skipped]
            self.paths = [self.paths[k] for k in keep]
            self.lr_hw = [self.lr_hw[k] for k in keep]
            self._check_usable(len(small), len(corrupt) + len(self._cache.skipped))

    def _check_usable(self, small: int, corrupt: int) -> None:
        if not self.paths:
            raise ConfigError(f'key "dataset.root": no usable images in {self.hr_dir}: {small} '
                              f"smaller than patch_size={self.patch_size} (scale={self.scale}), "
                              f"{corrupt} unreadable")

    def _lr_hw(self, hr_path: Path, lr_path: Path | None) -> tuple[int, int]:
        """LR (h, w) of an image from the file headers alone, so uncached sets start fast. A
        prepared pair must be exactly `scale` apart, or its crops would misalign."""
        h, w = image_size(hr_path)
        if lr_path is None:
            return h // self.scale, w // self.scale
        lh, lw = image_size(lr_path)
        if (h, w) != (lh * self.scale, lw * self.scale):
            raise ImageReadError(hr_path, f"HR size {h}x{w} is not {self.scale} x LR size "
                                          f"{lh}x{lw} of {lr_path}")
        return lh, lw

    def _decode(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Image k's RGB uint8 (hr, lr), or None (warned once) if corrupt under `skip_corrupt`."""
        hr_path, lr_path = self.paths[k]
        try:
            hr = load_image(hr_path)  # sizes were checked from the headers
            hr, lr = make_lr(hr, self.scale) if lr_path is None else (hr, load_image(lr_path))
        except ImageReadError as err:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipped an image that cannot be decoded ({err})", stacklevel=2)
            return None
        return as_rgb(hr), as_rgb(lr)

    def __len__(self) -> int:
        return len(self.paths)

    def pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``k``'s decoded uint8 ``(hr, lr)``, or under `skip_corrupt` the next usable one."""
        if self._cache is not None:
            return self._cache.pair(k)
        for j in ((k + i) % len(self.paths) for i in range(len(self.paths))):
            if j not in self._bad:
                pair = self._decode(j)
                if pair is not None:
                    return pair
                self._bad.add(j)
        raise ConfigError(f'key "dataset.root": none of the images in {self.hr_dir} decodes')

    def __getitem__(self, item: tuple[int, int]) -> dict:
        k, seed = item
        hr, lr = self.pair(k)
        y, x, flips = draw_patch_params(lr.shape[:2], self.lr_size, self.augment, seed)
        n, s = self.lr_size, self.scale  # the LR patch at (y, x) and the HR it was made from
        lr, hr = lr[y:y + n, x:x + n], hr[y * s:(y + n) * s, x * s:(x + n) * s]
        # crops and flips are strided views; to_float_tensor makes the single copy
        return {"lr": to_float_tensor(dihedral(lr, *flips)),   # (3, p/s, p/s)
                "hr": to_float_tensor(dihedral(hr, *flips))}   # (3, p, p)


def scorable_pair(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(modcropped HR, its LR) of an evaluation image, refusing in one line naming the file
    one too small to score: SSIM's 11x11 window must fit inside the ``scale``-pixel border."""
    hr = load_image(path)
    if min(hr.shape[:2]) < 2 * scale + 11:
        raise ImageReadError(path, f"{hr.shape[1]}x{hr.shape[0]} is too small to score at "
                                   f"x{scale} (at least {2 * scale + 11} pixels a side)")
    return make_lr(hr, scale)


class BenchmarkDataset(Dataset):
    """Whole images for evaluation, in memory: {"name", "lr", "hr" (3-channel float CHW [0, 1]),
    "hr_uint8", "lr_uint8" (the file's channels, for scoring: collapse a "gray" item's output with
    `gray_from_rgb`), "gray"}. Sizes differ: iterate (or batch_size=None), do not batch."""

    def __init__(self, root, scale: int = 4, name: str | None = None):
        self.root, self.scale, self.name = Path(root), scale, name or Path(root).name
        self.items = []
        for path in list_images(self.root):
            hr, lr = scorable_pair(path, scale)
            self.items.append({"name": path.stem, "lr": to_float_tensor(as_rgb(lr)),
                               "hr": to_float_tensor(as_rgb(hr)), "hr_uint8": hr,
                               "lr_uint8": lr, "gray": hr.ndim == 2})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])

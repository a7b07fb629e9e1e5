"""Training and evaluation datasets for x`scale` super-resolution. Two layouts: a plain folder
of HR images (T91, Set5, Set14), whose LR is made by `make_lr` (the degradation evaluation uses),
or a prepared folder (DIV2K/DF2K sub-images) with same-named files in `HR/` and `LR_x{scale}/`.
Models get float CHW RGB tensors in [0, 1]; uint8 benchmark arrays keep the file's channels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from srlib.data.augment import aligned_crop, dihedral, draw_patch_params
from srlib.data.cache import DecodedCache
from srlib.data.imresize import make_lr
from srlib.data.io import ImageReadError, image_size, list_images, load_image, to_float_tensor


def as_rgb(img: np.ndarray) -> np.ndarray:
    """Expand a single-channel image to R=G=B, because every model here takes RGB."""
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    return np.repeat(img[..., :1] if img.ndim == 3 else img[..., None], 3, axis=2)


def gray_from_rgb(sr: np.ndarray) -> np.ndarray:
    """Collapse an RGB output to one channel for scoring a gray image: the rounded channel
    mean, which averages out the model's small per-channel differences (its input was R=G=B)."""
    if sr.ndim == 2:
        return sr
    return np.clip(np.round(sr.astype(np.float32).mean(axis=2)), 0, 255).astype(np.uint8)


class PairedPatchDataset(Dataset):
    """Random aligned LR/HR patches for training.

    `length` sets a virtual epoch (index i uses image i % n), so iteration-based training
    rarely restarts DataLoader workers. `cache=True` decodes the set once into a memory-mapped
    file in ``root/.srlib_cache`` (see `cache.DecodedCache`); `cache=False` decodes per item.
    Crops and flips come from torch's global RNG, seeded per item by `sampler.SeededItems`."""

    def __init__(self, root, patch_size: int = 96, scale: int = 4, augment: bool = True,
                 length: int | None = None, cache: bool = True, skip_corrupt: bool = False,
                 progress: bool = False):
        if patch_size % scale:
            raise ValueError(f"patch_size={patch_size} is not divisible by scale={scale}")
        self.patch_size, self.scale, self.lr_size = patch_size, scale, patch_size // scale
        self.root, self.augment = Path(root), augment
        self.hr_dir, self.lr_dir = self.root / "HR", self.root / f"LR_x{scale}"
        if not (self.hr_dir.is_dir() and self.lr_dir.is_dir()):  # a plain folder of HR images
            self.hr_dir, self.lr_dir = self.root, None
        self.paths: list[tuple[Path, Path | None]] = []
        small, corrupt = [], []
        for hr_path in list_images(self.hr_dir):
            lr_path = None if self.lr_dir is None else self.lr_dir / hr_path.name
            if lr_path is not None and not lr_path.is_file():
                raise FileNotFoundError(f"no LR file {lr_path} for HR image {hr_path}")
            try:  # sizes from the headers first: a tiny image is skipped before it is resized
                if min(self._lr_hw(hr_path, lr_path)) < self.lr_size:
                    small.append(hr_path.name)
                    continue
            except ImageReadError as err:
                if not skip_corrupt:
                    raise
                corrupt.append(str(err))
                continue
            self.paths.append((hr_path, lr_path))

        if corrupt:
            warnings.warn(f"skipped {len(corrupt)} unreadable image(s) in {self.hr_dir}: "
                          + "; ".join(corrupt), stacklevel=2)
        if small:
            warnings.warn(f"skipped {len(small)} image(s) in {self.hr_dir} smaller than "
                          f"patch_size={patch_size}: " + ", ".join(small), stacklevel=2)
        if not self.paths:
            raise ValueError(f"no usable images in {self.hr_dir}: {len(small)} smaller than "
                             f"patch_size={patch_size} (scale={scale}), {len(corrupt)} unreadable")
        self.length = len(self.paths) if length is None else int(length)
        if self.length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        self._cache = DecodedCache(self.root / ".srlib_cache", self.paths, scale,
                                   lambda k: self._load_pair(*self.paths[k]),
                                   progress) if cache else None

    def _check_pair(self, hr_path, hr_hw, lr_path, lr_hw) -> None:
        """Prepared pairs must be exactly `scale` apart, or crops would misalign."""
        if hr_hw != (lr_hw[0] * self.scale, lr_hw[1] * self.scale):
            raise ValueError(f"{hr_path}: HR size {hr_hw[0]}x{hr_hw[1]} is not "
                             f"{self.scale} x LR size {lr_hw[0]}x{lr_hw[1]} of {lr_path}")

    def _lr_hw(self, hr_path: Path, lr_path: Path | None) -> tuple[int, int]:
        """LR (h, w) of an image from the file headers alone, so uncached sets start fast."""
        h, w = image_size(hr_path)
        if lr_path is None:
            return h // self.scale, w // self.scale
        lr_hw = image_size(lr_path)
        self._check_pair(hr_path, (h, w), lr_path, lr_hw)
        return lr_hw

    def _load_pair(self, hr_path: Path, lr_path: Path | None):
        """Decode (and if needed synthesise) one uint8 RGB (hr, lr) pair."""
        if lr_path is None:
            hr, lr = make_lr(load_image(hr_path), self.scale)
        else:
            hr, lr = load_image(hr_path), load_image(lr_path)
            self._check_pair(hr_path, hr.shape[:2], lr_path, lr.shape[:2])
        return as_rgb(hr), as_rgb(lr)

    def __len__(self) -> int:
        return self.length

    def pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded uint8 ``(hr, lr)`` of image ``k``: from the cache when there is one."""
        return self._cache.pair(k) if self._cache is not None else self._load_pair(*self.paths[k])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        hr, lr = self.pair(index % len(self.paths))
        y, x, flips = draw_patch_params(lr.shape[:2], self.lr_size, self.augment)
        lr, hr = aligned_crop(lr, hr, y, x, self.lr_size, self.scale)
        # crops and flips are strided views; to_float_tensor makes the single copy
        return {"lr": to_float_tensor(dihedral(lr, *flips)),
                "hr": to_float_tensor(dihedral(hr, *flips))}


def scorable_pair(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(modcropped HR, its LR) of an evaluation image, refusing in one line naming the file
    one too small to score: SSIM's 11x11 window must fit inside the ``scale``-pixel border."""
    hr = load_image(path)
    if min(hr.shape[:2]) < 2 * scale + 11:
        raise ImageReadError(path, f"{hr.shape[1]}x{hr.shape[0]} is too small to score at "
                                   f"x{scale} (at least {2 * scale + 11} pixels a side)")
    return make_lr(hr, scale)


class BenchmarkDataset(Dataset):
    """Whole images for evaluation: modcropped HR and its bicubic LR, kept in memory. Items:
    {"name", "lr", "hr" (3-channel float CHW), "hr_uint8", "lr_uint8" (the file's channels, for
    scoring: collapse a "gray" item's output with `gray_from_rgb`), "gray"}. Sizes differ per
    image: iterate the dataset (or use batch_size=None) rather than batching."""

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

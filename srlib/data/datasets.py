"""Training and evaluation datasets for x`scale` super-resolution.

Two shapes of data exist in this project:

* a plain folder of HR images (T91, Set5, Set14): LR is synthesised with the
  MATLAB-exact bicubic `make_lr`, so training and evaluation see the same
  degradation;
* a prepared folder (DIV2K/DF2K sub-images) with `HR/` and `LR_x{scale}/`
  holding files of the same name: LR was made once, offline, and is loaded.

Tensors handed to models are always float CHW in [0, 1] with 3 channels
(models take RGB); the uint8 arrays in benchmark items are the scoring space
and keep the channel count of the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from srlib.data.augment import aligned_crop, dihedral, draw_patch_params
from srlib.data.io import ImageReadError, list_images, load_image, to_float_tensor
from srlib.data.imresize import make_lr


def as_rgb(img: np.ndarray) -> np.ndarray:
    """Expand a single-channel image to R=G=B, because every model here takes RGB."""
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3:
        img = img[..., 0]
    return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))


def gray_from_rgb(sr: np.ndarray) -> np.ndarray:
    """Collapse an RGB output back to one channel for scoring a gray image.

    We take the rounded mean of the channels rather than channel 0: the model
    was fed R=G=B but its outputs differ slightly per channel, and the mean
    averages that noise out instead of betting on one channel.
    """
    if sr.ndim == 2:
        return sr
    mean = sr.astype(np.float32).mean(axis=2)
    return np.clip(np.round(mean), 0, 255).astype(np.uint8)


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header only, so uncached datasets start fast."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as err:  # PIL raises several unrelated types for bad files
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from err


def _resolve_layout(root: Path, scale: int, lr_root) -> tuple[Path, Path | None]:
    """Return (hr_dir, lr_dir); lr_dir is None when LR must be synthesised."""
    if lr_root is not None:
        return root, Path(lr_root)
    hr_dir, lr_dir = root / "HR", root / f"LR_x{scale}"
    if hr_dir.is_dir() and lr_dir.is_dir():
        return hr_dir, lr_dir
    return root, None


class PairedPatchDataset(Dataset):
    """Random aligned LR/HR patches for training.

    `length` sets a virtual epoch (index i uses image i % n): iteration-based
    training draws many patches per image, and a long epoch keeps DataLoader
    worker start-up rare. With `cache=True` decoded uint8 images (and the
    synthesised LR) stay in memory, which is the quick path for small sets
    such as T91; `cache=False` decodes per item, meant for large prepared sets
    whose LR is on disk (a plain folder then re-runs `make_lr` on every item).

    `root` is a folder of HR images, or a prepared folder with `HR/` and
    `LR_x{scale}/` (detected); `lr_root` names the LR folder explicitly, making
    `root` the HR folder. Crops and flips are drawn from torch's global RNG;
    training seeds it per item (`srlib.data.sampler.SeededItems`), so item
    (index, seed) is the same patch in any worker, after any resume.
    """

    def __init__(self, root, patch_size: int = 96, scale: int = 4, augment: bool = True,
                 length: int | None = None, cache: bool = True, skip_corrupt: bool = False,
                 lr_root=None):
        if patch_size % scale:
            raise ValueError(f"patch_size={patch_size} is not divisible by scale={scale}")
        self.root = Path(root)
        self.patch_size, self.scale, self.lr_size = patch_size, scale, patch_size // scale
        self.augment, self.cache = augment, cache
        self.hr_dir, self.lr_dir = _resolve_layout(self.root, scale, lr_root)

        self.paths: list[tuple[Path, Path | None]] = []
        self._images: list[tuple[np.ndarray, np.ndarray]] = []
        small, corrupt = [], []
        for hr_path in list_images(self.hr_dir):
            lr_path = self._lr_path_for(hr_path)
            try:
                lr_hw, pair = self._probe(hr_path, lr_path)
            except ImageReadError as err:
                if not skip_corrupt:
                    raise
                corrupt.append(str(err))
                continue
            if min(lr_hw) < self.lr_size:
                small.append(hr_path.name)
                continue
            self.paths.append((hr_path, lr_path))
            if pair is not None:
                self._images.append(pair)

        if corrupt:
            warnings.warn(f"skipped {len(corrupt)} unreadable image(s) in {self.hr_dir}: "
                          + "; ".join(corrupt), stacklevel=2)
        if small:
            warnings.warn(f"skipped {len(small)} image(s) in {self.hr_dir} smaller than "
                          f"patch_size={patch_size}: " + ", ".join(small), stacklevel=2)
        if not self.paths:
            raise ValueError(f"no usable images in {self.hr_dir}: {len(small)} smaller than "
                             f"patch_size={patch_size} (scale={scale}), "
                             f"{len(corrupt)} unreadable")
        self.length = len(self.paths) if length is None else int(length)
        if self.length <= 0:
            raise ValueError(f"length must be positive, got {length}")

    def _lr_path_for(self, hr_path: Path) -> Path | None:
        if self.lr_dir is None:
            return None
        lr_path = self.lr_dir / hr_path.name
        if not lr_path.is_file():
            raise FileNotFoundError(f"no LR file {lr_path} for HR image {hr_path}")
        return lr_path

    def _check_pair(self, hr_path, hr_hw, lr_path, lr_hw) -> None:
        """Prepared pairs must be exactly `scale` apart, or crops would misalign."""
        if hr_hw != (lr_hw[0] * self.scale, lr_hw[1] * self.scale):
            raise ValueError(f"{hr_path}: HR size {hr_hw[0]}x{hr_hw[1]} is not "
                             f"{self.scale} x LR size {lr_hw[0]}x{lr_hw[1]} of {lr_path}")

    def _load_pair(self, hr_path: Path, lr_path: Path | None):
        """Decode (and if needed synthesise) one uint8 RGB (hr, lr) pair."""
        if lr_path is None:
            hr, lr = make_lr(load_image(hr_path), self.scale)
        else:
            hr, lr = load_image(hr_path), load_image(lr_path)
            self._check_pair(hr_path, hr.shape[:2], lr_path, lr.shape[:2])
        return as_rgb(hr), as_rgb(lr)

    def _probe(self, hr_path: Path, lr_path: Path | None):
        """LR (h, w) of an image, plus its decoded pair when caching."""
        if self.cache:
            pair = self._load_pair(hr_path, lr_path)
            return pair[1].shape[:2], pair
        h, w = _header_size(hr_path)
        if lr_path is None:
            return (h // self.scale, w // self.scale), None
        lr_hw = _header_size(lr_path)
        self._check_pair(hr_path, (h, w), lr_path, lr_hw)
        return lr_hw, None

    def __len__(self) -> int:
        return self.length

    def pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded uint8 ``(hr, lr)`` of image ``k``: from the cache when there is one."""
        return self._images[k] if self.cache else self._load_pair(*self.paths[k])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        k = index % len(self.paths)
        hr, lr = self.pair(k)
        y, x, flips = draw_patch_params(lr.shape[:2], self.lr_size, self.augment)
        lr, hr = aligned_crop(lr, hr, y, x, self.lr_size, self.scale)
        lr, hr = dihedral(lr, *flips), dihedral(hr, *flips)
        # Crops/flips are strided views; to_float_tensor makes the single copy.
        return {"lr": to_float_tensor(lr), "hr": to_float_tensor(hr)}


class BenchmarkDataset(Dataset):
    """Whole images for evaluation: modcropped HR and its bicubic LR, kept in memory.

    Items: {"name", "lr", "hr", "hr_uint8", "lr_uint8", "gray"}. "lr"/"hr" are
    model-space float CHW tensors, always 3 channels; "hr_uint8"/"lr_uint8" are
    scoring-space arrays with the file's channel count (a single-channel image
    stays HxW). For "gray" items, collapse the RGB output with `gray_from_rgb`
    before scoring against "hr_uint8". Sizes differ per image, so iterate the
    dataset directly (or use batch_size=None) rather than batching.
    """

    def __init__(self, root, scale: int = 4, name: str | None = None):
        self.root, self.scale = Path(root), scale
        self.name = name or self.root.name
        self.items = [self._make_item(p) for p in list_images(self.root)]

    def _make_item(self, path: Path) -> dict:
        hr, lr = make_lr(load_image(path), self.scale)
        return {"name": path.stem,
                "lr": to_float_tensor(as_rgb(lr)),
                "hr": to_float_tensor(as_rgb(hr)),
                "hr_uint8": hr,
                "lr_uint8": lr,
                "gray": hr.ndim == 2}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])

"""Image reading/writing with loud failures, uint8 <-> float conversions and channel helpers.
A truncated PNG that decodes to a half-grey image still yields a (wrong) PSNR, so reads verify
the file and raise ``ImageReadError`` naming it; writes are atomic (see `atomic_path`)."""
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image file is missing, unreadable or corrupt."""

    def __init__(self, path, reason: str | None = None):
        if reason is None:  # re-raised by a DataLoader worker: torch passes its traceback alone,
            # whose last line is "...ImageReadError: cannot read image PATH: REASON"
            last = str(path).strip().splitlines()[-1].split("ImageReadError: ", 1)[-1]
            path, _, reason = last.removeprefix("cannot read image ").partition(": ")
            reason = reason or "unreadable"
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):  # to and from DataLoader workers intact
        return type(self), (self.path, self.reason)


@contextmanager
def _reading(path) -> Iterator[None]:
    """Turn whatever PIL raises for a bad file (OSError, SyntaxError, ...) into ImageReadError."""
    try:
        yield
    except Exception as exc:
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc


def image_size(path) -> tuple[int, int]:
    """(height, width) from the file header alone, so nothing is decoded."""
    with _reading(path), Image.open(path) as im:
        return im.height, im.width


def _round_to_uint8(x: np.ndarray) -> np.ndarray:
    """Clamp to [0, 255] and round half up (values are non-negative)."""
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)


def load_image(path) -> np.ndarray:
    """Read an image as uint8: HxWx3 for colour, HxW for single-channel."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a regular file")
    with _reading(path):
        with Image.open(path) as im:
            im.verify()  # checks structure/CRCs; catches truncated PNGs
        with Image.open(path) as im:
            im.load()  # decodes; raises on truncated data
            if im.mode.startswith("I") or im.mode == "F":  # 16-bit gray, or float gray in [0, 1]
                peak = 255.0 if im.mode == "F" else 255.0 / 65535.0
                return _round_to_uint8(np.asarray(im, dtype=np.float64) * peak)
            gray = im.mode in ("1", "L", "LA")
            return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)


def read_as_displayed(path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(image, alpha or None, notes) of an image as a viewer shows it: EXIF orientation
    applied, palettes and CMYK converted, transparency split off as a uint8 alpha channel, the
    first frame of an animation and 16-bit values as 8 bits (each said in a note)."""
    path, notes = Path(path), []
    with _reading(path), Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"{path.name} has {frames} frames: this is the first")
        if im.mode.startswith("I") or any(";16" in str(t.args) for t in im.tile):
            notes.append(f"{path.name} has 16-bit values: written as 8-bit")
        im.load()
        im = ImageOps.exif_transpose(im)
        transparent = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
        if im.mode.startswith("I") or im.mode == "F":
            im = Image.fromarray(load_image(path))  # 16-bit or float gray, scaled as training
        gray = im.mode in ("1", "L", "LA", "I;16", "I")
        if transparent:
            arr = np.asarray(im.convert("LA" if gray else "RGBA"), dtype=np.uint8)
            return (arr[..., 0] if gray else arr[..., :3]).copy(), arr[..., -1].copy(), notes
        return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8), None, notes


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, moved onto it only if the block ends without
    error, so a crash never leaves half a file; a failed write is an OSError naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename in (None, str(tmp)):  # the reader needs the real name, not the .tmp
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_image(path, array) -> Path:
    """Write uint8 or float [0, 1] HxW / HxWx3 / HxWx4 (RGBA) atomically; returns the path."""
    path, arr = Path(path), to_uint8(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(f"save_image expects HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the extension of {path}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format=fmt)
    return path


def list_images(folder) -> list[Path]:
    """Sorted image paths directly inside ``folder`` (by extension, any case)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return paths


def to_uint8(x) -> np.ndarray:
    """Float [0, 1] image -> uint8 numpy, clamped then rounded: numpy HxW / HxWxC, or a tensor
    CxHxW / 1xCxHxW / HxW made channels-last (one channel gives HxW). uint8 passes unchanged."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"to_uint8 takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() == 3:
            t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
        x = t.numpy()
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"expected a float [0, 1] or uint8 image, got dtype {arr.dtype}")
    return _round_to_uint8(arr.astype(np.float64) * 255.0)


def to_float_tensor(img) -> torch.Tensor:
    """uint8 HxWxC or HxW numpy -> float32 CxHxW tensor in [0, 1]; float input is not rescaled."""
    arr = np.asarray(img)
    arr = arr[..., None] if arr.ndim == 2 else arr
    t = torch.from_numpy(np.require(arr.transpose(2, 0, 1), requirements=["C", "W"]))
    if arr.dtype == np.uint8:
        return t.float().div_(255.0)
    if np.issubdtype(arr.dtype, np.floating):
        return t.float()
    raise TypeError(f"expected uint8 or float image, got dtype {arr.dtype}")


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

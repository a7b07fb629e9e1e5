"""Use a trained generator: load it, upscale a tensor, or an image of any size tile by tile. Tiles
overlap by ``overlap`` pixels and keep only their centres: with an overlap of at least the network's
receptive radius the result equals the untiled one, in the memory of the output plus a tile."""
import os
from pathlib import Path

import numpy as np
import torch

from srlib import build, checkpoint
from srlib.config import ConfigError
from srlib.data import io as image_io
from srlib.data.imresize import imresize
from srlib.distributed import PRECISIONS, autocast


def load_generator(path: str | Path, device: str = "cpu", prefer_ema: bool = True):
    """Rebuild a trained generator from any file :func:`srlib.checkpoint.read_generator` reads."""
    cfg, weights = checkpoint.read_generator(path, prefer_ema)
    if cfg is None:
        raise checkpoint.CheckpointError(f"{path}: a bare state dict (no config inside to rebuild "
                                         "the model); load it into a model you build yourself")
    model = build.generator(cfg["model"], cfg["scale"], cfg["model_params"],
                            key=f"{path}: model_params")
    checkpoint.load_weights(model, weights, path)
    return model.to(device).eval()


@torch.inference_mode()
def upscale(model: torch.nn.Module, lr: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """SR of an NCHW (or CHW) float batch in [0, 1], whole: same layout, float32 on the CPU,
    clamped. Scoring keeps fp32, as the protocol says; ``fp16``/``bf16`` autocast the model."""
    x = lr.unsqueeze(0) if lr.dim() == 3 else lr                  # (N, 3, h, w)
    device = next(model.parameters()).device
    if precision == "auto":  # fp16 on a GPU (tensor cores, half the memory), fp32 on a CPU
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of auto, {', '.join(PRECISIONS)}")
    with autocast(device.type, precision):
        sr = model(x.to(device, torch.float32)).float().clamp_(0, 1).cpu()  # (N, 3, s*h, s*w)
    return sr[0] if lr.dim() == 3 else sr


def tiles(height: int, width: int, tile: int | None, overlap: int):
    """(core, context) boxes (top, bottom, left, right): cores tile the image, contexts pad them."""
    if tile is None or (height <= tile and width <= tile):
        yield (0, height, 0, width), (0, height, 0, width)
        return
    if overlap * 2 >= tile:
        raise ValueError(f"overlap {overlap} must be less than half the tile {tile}")
    step = tile - 2 * overlap
    for top in range(0, height, step):
        for left in range(0, width, step):
            bottom, right = min(height, top + step), min(width, left + step)
            yield (top, bottom, left, right), (max(0, top - overlap), min(height, bottom + overlap),
                                               max(0, left - overlap), min(width, right + overlap))


def upscale_image(model: torch.nn.Module, image: np.ndarray, tile: int | None = 192,
                  overlap: int = 32, precision: str = "auto") -> np.ndarray:
    """uint8 HxWx3 (or HxW gray) LR image -> uint8 SR image of the same kind, tile by tile."""
    s, rgb = model.scale, image_io.as_rgb(image)
    out = np.empty((rgb.shape[0] * s, rgb.shape[1] * s, 3), np.uint8)
    for (top, bottom, left, right), (ct, cb, cl, cr) in tiles(*rgb.shape[:2], tile, overlap):
        sr = upscale(model, image_io.to_float_tensor(rgb[ct:cb, cl:cr]), precision)  # (3, s*h, s*w)
        core = sr[:, (top - ct) * s:(bottom - ct) * s, (left - cl) * s:(right - cl) * s]
        out[top * s:bottom * s, left * s:right * s] = image_io.to_uint8(core)
    return image_io.gray_from_rgb(out) if image.ndim == 2 else out


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: what the machine has in all
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def upscale_file(model: torch.nn.Module, src: Path, dst: Path, tile: int | None = 192,
                 overlap: int = 32, precision: str = "auto") -> tuple[tuple[int, int], list[str]]:
    """Upscale the file ``src``, as a viewer shows it (alpha too), into ``dst``: ((w, h), notes)."""
    image, alpha, notes = image_io.read_as_displayed(src)
    s = model.scale
    height, width = image.shape[0] * s, image.shape[1] * s
    # measured (benchmarks/upscale_memory.py): the uint8 output (3 or 4 bytes a pixel), PIL's copy
    # of it while saving (4 bytes a pixel), and about 0.5 GiB for torch and one tile of 192
    need = height * width * (3 + (alpha is not None) + 4) + 2**29
    if need > 0.9 * _available_bytes():
        raise ConfigError(f"{src}: its x{s} output would be {width}x{height} ({need / 2**30:.1f} "
                          f"GiB to hold and encode) and only {_available_bytes() / 2**30:.1f} "
                          "GiB of memory is available; upscale a smaller image")
    if alpha is not None and dst.suffix.lower() not in (".png", ".tif", ".tiff", ".webp"):
        raise ConfigError(f"output {dst}: {src} has transparency, which {dst.suffix} cannot "
                          "hold; use a .png output")
    sr = upscale_image(model, image, tile, overlap, precision)
    if alpha is not None:  # HxW (or HxWx3) + alpha -> HxWx4: what a viewer composites
        sr = np.dstack([image_io.as_rgb(sr), imresize(alpha, float(s))])
    image_io.save_image(dst, sr)
    return (width, height), notes

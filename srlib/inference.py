"""Use a trained generator: load it, upscale images, in tiles when they are large: each
``tile``-pixel piece overlaps its neighbours by ``overlap`` pixels and only its centre is kept,
so with an overlap at least the network's receptive radius the result equals the untiled one,
with memory bounded by the tile size."""
import contextlib
from pathlib import Path

import numpy as np
import torch

from srlib import build, checkpoint
from srlib.data.datasets import gray_from_rgb
from srlib.data.io import to_uint8

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_generator(path: str | Path, device: str = "cpu", prefer_ema: bool = True):
    """Rebuild a trained generator from an srlib checkpoint, an exported ``.safetensors`` file
    or BasicSR MSRResNet weights (see :func:`srlib.checkpoint.read_generator`)."""
    cfg, weights = checkpoint.read_generator(path, prefer_ema)
    if cfg is None:
        raise checkpoint.CheckpointError(f"{path}: a bare state dict (no config inside to rebuild "
                                         "the model); load it into a model you build yourself")
    model = build.MODELS[cfg["model"]](scale=cfg["scale"], **cfg["model_params"])
    checkpoint.load_weights(model, weights, path)
    model.scale = cfg["scale"]
    return model.to(device).eval()


@torch.inference_mode()
def upscale(model: torch.nn.Module, lr: torch.Tensor, scale: int = 4, tile: int | None = None,
            overlap: int = 32, precision: str = "fp32") -> torch.Tensor:
    """SR of an NCHW (or CHW) float batch in [0,1]: the same layout on the CPU, float32, clamped
    to [0,1]. ``fp16``/``bf16`` run the model under autocast (the weights stay float32); ``auto``
    is fp16 on a GPU (tensor cores, half the memory), fp32 on a CPU, where half precision is
    slower. Scoring keeps fp32, so published figures follow the protocol exactly."""
    squeeze = lr.dim() == 3
    x = lr.unsqueeze(0) if squeeze else lr
    device = next(model.parameters()).device
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of auto, {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    run = lambda t: model(t.to(device, torch.float32)).float().clamp_(0, 1).cpu()  # noqa: E731
    n, c, h, w = x.shape
    with autocast:
        if tile is None or (h <= tile and w <= tile):
            return run(x)[0] if squeeze else run(x)
        if overlap * 2 >= tile:
            raise ValueError(f"overlap {overlap} must be less than half the tile {tile}")
        out = torch.empty(n, 3, h * scale, w * scale)
        step = tile - 2 * overlap
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                ys, xs = max(0, y0 - overlap), max(0, x0 - overlap)
                ye, xe = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
                piece = run(x[:, :, ys:ye, xs:xe])
                yk, xk = (y0 - ys) * scale, (x0 - xs) * scale
                hk, wk = (min(h, y0 + step) - y0) * scale, (min(w, x0 + step) - x0) * scale
                out[:, :, y0 * scale:y0 * scale + hk, x0 * scale:x0 * scale + wk] = \
                    piece[:, :, yk:yk + hk, xk:xk + wk]
    return out[0] if squeeze else out


def upscale_image(model: torch.nn.Module, image: np.ndarray, scale: int = 4,
                  tile: int | None = 256, overlap: int = 32, precision: str = "auto") -> np.ndarray:
    """uint8 HxWx3 (or HxW gray) LR image -> uint8 SR image of the same kind: the fast path
    (tiled, half precision on a GPU) that ``srlib upscale`` and the notebooks use."""
    gray = image.ndim == 2
    rgb = np.repeat(image[..., None], 3, axis=2) if gray else image[..., :3]
    lr = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1).float() / 255.0
    sr = to_uint8(upscale(model, lr, scale, tile, overlap, precision))
    return gray_from_rgb(sr) if gray else sr

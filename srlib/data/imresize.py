"""MATLAB-compatible bicubic ``imresize`` and ``modcrop``.

Why not PIL / OpenCV / ``F.interpolate``: the published SR numbers (SRCNN,
SRResNet, EDSR, ...) were produced with MATLAB's ``imresize``, whose
antialiased bicubic downscale, pixel-centre mapping, boundary rule and
per-pass uint8 rounding all differ from those libraries. Using anything
else shifts the bicubic baseline by tenths of a dB, which is larger than
many of the gaps papers report.

What is reproduced (``imresize.m``, ``contributions()``):

* Keys cubic kernel, a = -0.5, width 4.
* Shrinking with antialiasing widens the kernel by ``1/scale`` (and scales
  its height by ``scale``), so the filter also acts as a low-pass.
* Output pixel ``x`` (1-based) maps to input ``u = x/scale + 0.5*(1 - 1/scale)``.
* Out-of-range taps are folded with ``aux = [1:n, n:-1:1]``: half-sample
  symmetric extension (edge pixel repeated, then mirrored). Some imresize.m
  releases clamp instead (``min(max(1, idx), n)``, pure edge replication).
  The two rules move the Set5/Set14 x4 bicubic means by <= 0.003 dB, below
  the two decimals papers print, so the published figures cannot tell them
  apart; the fold is what the widely used releases (and Python ports
  validated against MATLAB) do.
* Weight columns that are zero for every output pixel are dropped.
* Rows and columns are resized separately, the dimension with the smaller
  scale first (rows first on a tie); uint8 input is rounded (half away
  from zero) and clipped back to uint8 after *each* pass, as MATLAB's
  ``imresizemex`` returns the input class.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["imresize", "make_lr", "modcrop"]

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def contributions(in_len: int, out_len: int, scale: float, antialiasing: bool = True):
    """Weights and 0-based source indices, one row per output pixel.

    Mirrors MATLAB's ``contributions()``; returned as float64 / int64 numpy
    arrays of shape (out_len, taps). Exposed so tests and callers can
    inspect the exact filter used.
    """
    width = _KERNEL_WIDTH
    if scale < 1 and antialiasing:
        width = _KERNEL_WIDTH / scale

        def kernel(t):
            return scale * _cubic(scale * t)

    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based, may be out of range
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # 0-based fold
    idx = aux[np.mod(idx.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _round_to_uint8_grid(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 255] then round half away from zero (values are >= 0); in place."""
    return x.clamp_(0.0, 255.0).add_(0.5).floor_()


def _resize_dim(x: torch.Tensor, dim: int, weights: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """Apply the (out x in) resampling matrix along ``dim``.

    The matrix is banded (a few taps per row), so it is built sparse:
    cost is O(out * taps), and repeated folded indices are summed.
    """
    n_out, taps = weights.shape
    rows = np.repeat(np.arange(n_out), taps)
    coords = torch.as_tensor(np.stack([rows, idx.reshape(-1)]), device=x.device)
    values = torch.as_tensor(weights.reshape(-1), dtype=x.dtype, device=x.device)
    matrix = torch.sparse_coo_tensor(
        coords, values, (n_out, x.shape[dim]), check_invariants=True
    ).coalesce()
    moved = x.movedim(dim, 0)
    out = torch.sparse.mm(matrix, moved.reshape(moved.shape[0], -1))
    return out.reshape((n_out,) + tuple(moved.shape[1:])).movedim(0, dim)


def _resize_hw(
    x: torch.Tensor,
    dims: tuple[int, int],
    out_hw: tuple[int, int],
    scales: tuple[float, float],
    antialiasing: bool,
    quantize: bool,
) -> torch.Tensor:
    """Resize the (height, width) ``dims`` of a float tensor, MATLAB order."""
    order = (1, 0) if scales[1] < scales[0] else (0, 1)
    for axis in order:
        dim = dims[axis] % x.dim()
        weights, idx = contributions(x.shape[dim], out_hw[axis], scales[axis], antialiasing)
        x = _resize_dim(x, dim, weights, idx)
        if quantize:
            x = _round_to_uint8_grid(x)
    return x


def _plan(in_hw, scale, output_shape):
    """Output size and per-axis scale, as MATLAB derives them."""
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale or output_shape")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_hw = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_hw))
    else:
        out_hw = tuple(int(v) for v in output_shape)
        if len(out_hw) != 2 or min(out_hw) < 1:
            raise ValueError(f"output_shape must be two positive ints, got {output_shape}")
        scales = tuple(o / n for o, n in zip(out_hw, in_hw))
    return out_hw, scales


def imresize(img, scale=None, output_shape=None, antialiasing=True):
    """Bicubic resize matching MATLAB ``imresize(img, scale)``.

    ``img``: numpy HxW or HxWxC (uint8 or float), or a torch tensor
    (..., H, W). uint8 in gives uint8 out (rounded per pass, clipped);
    float in gives float out of the same dtype, unclipped. numpy floats are
    computed in float64; torch tensors stay on their device and dtype.
    """
    if isinstance(img, torch.Tensor):
        if img.dim() < 2:
            raise ValueError(f"expected a (..., H, W) tensor, got shape {tuple(img.shape)}")
        out_hw, scales = _plan(tuple(img.shape[-2:]), scale, output_shape)
        if img.dtype == torch.uint8:
            out = _resize_hw(img.double(), (-2, -1), out_hw, scales, antialiasing, quantize=True)
            return out.to(torch.uint8)
        if not img.is_floating_point():
            raise TypeError(f"unsupported tensor dtype {img.dtype}")
        if img.dtype in (torch.float16, torch.bfloat16):  # sparse kernels may lack half support
            out = _resize_hw(img.float(), (-2, -1), out_hw, scales, antialiasing, quantize=False)
            return out.to(img.dtype)
        return _resize_hw(img, (-2, -1), out_hw, scales, antialiasing, quantize=False)

    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC array, got shape {arr.shape}")
    is_uint8 = arr.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"unsupported array dtype {arr.dtype}; use uint8 or float")
    out_hw, scales = _plan(arr.shape[:2], scale, output_shape)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    out = _resize_hw(t, (0, 1), out_hw, scales, antialiasing, quantize=is_uint8).numpy()
    return out.astype(np.uint8 if is_uint8 else arr.dtype)


def modcrop(img, scale: int):
    """Crop the bottom/right so H and W are multiples of ``scale``.

    Needed so that HR and its x``scale`` LR line up exactly; numpy arrays
    are HxW[xC], tensors (..., H, W).
    """
    scale = int(scale)
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        return img[..., : h - h % scale, : w - w % scale]
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(cropped HR, LR): modcrop to ``scale``, then MATLAB bicubic x1/scale.

    The single place that defines how LR inputs are made, so training data and evaluation
    cannot drift apart. Both are uint8 for uint8 input.
    """
    hr = modcrop(np.asarray(hr), scale)
    return hr, imresize(hr, 1.0 / scale)

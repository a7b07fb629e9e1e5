"""MATLAB-compatible bicubic ``imresize``, ``modcrop`` and ``make_lr``.

Published SR numbers (SRCNN, SRResNet, EDSR, ...) used MATLAB's ``imresize``; PIL, OpenCV and
``F.interpolate`` differ in kernel width, pixel-centre mapping, boundary rule or rounding, which
moves the bicubic baseline by tenths of a dB. The rules of ``imresize.m`` (``contributions()``):

* Keys cubic kernel, a = -0.5, width 4; shrinking widens it by ``1/scale`` and scales its
  height by ``scale`` (antialiasing). Output pixel ``x`` (1-based) maps to input
  ``u = x/scale + 0.5*(1 - 1/scale)``; weight columns zero for every output are dropped.
* Out-of-range taps are clamped, ``min(max(1, idx), n)`` (edge replicated): ``make_lr``
  reproduces every x4 LR image MATLAB made for Set5 and Set14 (``data/Set*_LRx4_matlab``);
  mirror-folding (``[1:n, n:-1:1]``, as some ports do) is off by up to 10 levels at borders.
* Rows and columns are resized separately, the smaller scale first (rows on a tie); uint8 is
  rounded (half away from zero) and clipped after *each* pass, as ``imresizemex`` does."""
import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def contributions(in_len: int, out_len: int, scale: float):
    """MATLAB's ``contributions()``: float64 weights and int64 0-based source indices, each
    (out_len, taps), one row per output pixel."""
    width, kernel = 4.0, _cubic
    if scale < 1:  # antialiasing
        width, kernel = 4.0 / scale, lambda t: scale * _cubic(scale * t)
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1.0 - 1.0 / scale)
    idx = np.floor(u - width / 2.0)[:, None] + np.arange(math.ceil(width) + 2)  # 1-based
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    idx = np.clip(idx.astype(np.int64) - 1, 0, in_len - 1)  # 0-based, edges replicated
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_axis(x: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """One 1-D pass along ``axis``: each output is the weighted sum of its taps, in order."""
    weights, idx = contributions(x.shape[axis], out_len, scale)
    x = np.ascontiguousarray(np.moveaxis(x, axis, 0))  # whole rows gather fastest
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = sum(weights[:, t].reshape(shape) * x[idx[:, t]] for t in range(weights.shape[1]))
    return np.moveaxis(out, 0, axis)


def imresize(img, scale: float | None = None, output_shape=None) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` or ``imresize(img, output_shape)`` of HxW or HxWxC:
    uint8 gives uint8 (rounded and clipped per pass); float gives the same dtype, not clipped."""
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC array, got shape {arr.shape}")
    is_uint8 = arr.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"unsupported array dtype {arr.dtype}; use uint8 or float")
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale or output_shape")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_hw = tuple(math.ceil(scale * n) for n in arr.shape[:2])
    else:
        out_hw = tuple(int(v) for v in output_shape)
        if len(out_hw) != 2 or min(out_hw) < 1:
            raise ValueError(f"output_shape must be two positive ints, got {output_shape}")
        scales = tuple(o / n for o, n in zip(out_hw, arr.shape[:2]))
    x = arr.astype(np.float64)
    for axis in ((1, 0) if scales[1] < scales[0] else (0, 1)):
        x = _resize_axis(x, axis, out_hw[axis], scales[axis])
        if is_uint8:
            x = np.floor(np.clip(x, 0.0, 255.0) + 0.5)
    return x.astype(arr.dtype)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right of an HxW[xC] image to multiples of ``scale``, so HR and LR align."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(cropped HR, LR): modcrop to ``scale``, then MATLAB bicubic x1/scale. The one place LR
    inputs are made, so training data and evaluation cannot drift apart."""
    hr = modcrop(np.asarray(hr), scale)
    return hr, imresize(hr, 1.0 / scale)

"""PSNR and SSIM as the SR literature measures them.

The protocol (SRCNN onward, MATLAB): score the BT.601 luma of uint8
images, shave ``border`` pixels (= the scale) from every side, peak 255,
and SSIM per Wang et al. (2004) with an 11x11 Gaussian (sigma 1.5) and
'valid' filtering. Single-channel images (Set14 ``bridge``) are scored on
their gray values directly: pushing them through RGB->Y would map 0..255
onto 16..235 and inflate PSNR by ~0.6 dB.

Float inputs in [0, 1] are first quantised to uint8 (clamp, round), so a
model's float output scores exactly as its saved PNG would.
"""

from __future__ import annotations

import math

import numpy as np

from srlib.data.io import to_uint8

__all__ = ["METRICS", "psnr", "rgb_to_y", "score_pair", "ssim", "summarize"]

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")

_PEAK = 255.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the [16, 235] scale (MATLAB ``rgb2ycbcr`` channel 1).

    uint8 input: rounded to integers, because MATLAB's ``rgb2ycbcr`` returns
    uint8 for uint8 input; that rounding is part of how the published
    figures were made (it moves the Set5/Set14 bicubic PSNR by ~0.01 dB).
    float input in [0, 1]: not rounded (MATLAB keeps doubles as doubles).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {img.shape}")
    rgb = img.astype(np.float64)
    if img.dtype == np.uint8:
        rgb = rgb / 255.0
    y = 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    if img.dtype == np.uint8:
        y = np.floor(y + 0.5)
    return y


def _prepare(sr, hr, border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, pick the channels to score, shave the border -> float64 HxWxC."""
    sr, hr = to_uint8(sr), to_uint8(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {sr.shape} vs hr {hr.shape}")
    if sr.ndim == 3 and sr.shape[-1] == 1:
        sr, hr = sr[..., 0], hr[..., 0]
    if sr.ndim == 3 and sr.shape[-1] == 3:
        if y_channel:
            sr, hr = rgb_to_y(sr)[..., None], rgb_to_y(hr)[..., None]
    elif sr.ndim == 2:
        sr, hr = sr[..., None], hr[..., None]
    else:
        raise ValueError(f"expected HxW or HxWx3 images, got shape {sr.shape}")
    b = int(border)
    if b < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    h, w = sr.shape[:2]
    if h <= 2 * b or w <= 2 * b:
        raise ValueError(f"image {h}x{w} too small for border {b}")
    sr = sr[b : h - b, b : w - b].astype(np.float64)
    hr = hr[b : h - b, b : w - b].astype(np.float64)
    return sr, hr


def psnr(sr, hr, border: int = 4, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); ``math.inf`` if identical."""
    a, b = _prepare(sr, hr, border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_PEAK**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial one."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filter (the window is symmetric)."""
    rows = np.lib.stride_tricks.sliding_window_view(x, g.size, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, g.size, axis=1) @ g


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map of two float64 2-D images (Wang et al. 2004)."""
    g = _gaussian_1d()
    if min(a.shape) < g.size:
        raise ValueError(f"SSIM needs at least {g.size}x{g.size} pixels, got {a.shape}")
    c1, c2 = (0.01 * _PEAK) ** 2, (0.03 * _PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(sr, hr, border: int = 4, y_channel: bool = True) -> float:
    """Structural similarity; mean over channels when scoring RGB."""
    a, b = _prepare(sr, hr, border, y_channel)
    if np.array_equal(a, b):
        return 1.0
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


def score_pair(sr, hr, border: int) -> dict:
    """All four metrics for one SR/HR pair: the row every table and log line is made of."""
    return {"psnr_y": psnr(sr, hr, border, y_channel=True),
            "ssim_y": ssim(sr, hr, border, y_channel=True),
            "psnr_rgb": psnr(sr, hr, border, y_channel=False),
            "ssim_rgb": ssim(sr, hr, border, y_channel=False)}


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric over the rows (the number papers report)."""
    if not rows:
        raise ValueError("no rows to summarize")
    return {"name": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in METRICS}}

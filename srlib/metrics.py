"""PSNR and SSIM as SR papers measure them (in MATLAB): BT.601 luma of uint8 images, peak 255,
``border`` pixels (the scale) shaved off each side; SSIM per Wang et al. (2004): 11x11 Gaussian,
sigma 1.5, 'valid' filtering. Gray images (Set14 ``bridge``) are scored as gray (RGB->Y maps 0..255
onto 16..235: PSNR ~0.6 dB high). Floats in [0, 1] are quantised first, so they score as saved."""
import math

import numpy as np

from srlib.data.io import to_uint8

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the [16, 235] scale (MATLAB ``rgb2ycbcr`` channel 1). Rounded for uint8
    input, as MATLAB returns uint8 for uint8 (~0.01 dB on Set5/Set14 bicubic); not for float."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    rgb = img / 255.0 if is_uint8 else img.astype(np.float64)
    y = 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return np.floor(y + 0.5) if is_uint8 else y


def _prepare(sr, hr, border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, pick the channels to score, shave the border -> float64 HxWxC."""
    sr, hr = to_uint8(sr), to_uint8(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {sr.shape} vs hr {hr.shape}")
    if sr.ndim == 2:
        sr, hr = sr[..., None], hr[..., None]
    elif sr.shape[-1] == 3 and y_channel:
        sr, hr = rgb_to_y(sr)[..., None], rgb_to_y(hr)[..., None]
    elif sr.shape[-1] not in (1, 3):
        raise ValueError(f"expected HxW or HxWx3 images, got shape {sr.shape}")
    h, w = sr.shape[:2]
    if border < 0 or h <= 2 * border or w <= 2 * border:
        raise ValueError(f"image {h}x{w} too small for border {border} (or border < 0)")
    crop = (slice(border, h - border), slice(border, w - border))
    return sr[crop].astype(np.float64), hr[crop].astype(np.float64)


def psnr(sr, hr, border: int = 4, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); ``math.inf`` if identical."""
    a, b = _prepare(sr, hr, border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filter (the window is symmetric)."""
    rows = np.lib.stride_tricks.sliding_window_view(x, g.size, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, g.size, axis=1) @ g


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map of two float64 2-D images (Wang et al. 2004)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2.0 * 1.5**2))
    g /= g.sum()  # normalised 1-D Gaussian; its outer product is MATLAB's fspecial one
    if min(a.shape) < g.size:
        raise ValueError(f"SSIM needs at least {g.size}x{g.size} pixels, got {a.shape}")
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a, var_b = _filter_valid(a * a, g) - mu_a**2, _filter_valid(b * b, g) - mu_b**2
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
    return {f"{metric.__name__}_{space}": metric(sr, hr, border, y_channel=space == "y")
            for space in ("y", "rgb") for metric in (psnr, ssim)}  # the order of METRICS


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric over the rows (the number papers report)."""
    if not rows:
        raise ValueError("no rows to summarize")
    return {"name": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in METRICS}}

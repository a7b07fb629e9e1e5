"""Scoring SR results the way papers do, and the bicubic baseline.

The bicubic baseline is the project's calibration check: if it does not
reproduce the literature (Set5 x4 28.42 dB, Set14 x4 25.99-26.00 dB Y-PSNR),
resizing or scoring is off and no model number can be trusted.

Protocol (EDSR-style, MATLAB semantics): RGB HR is modcropped, shrunk and
re-enlarged in uint8, then scored on rounded Y. It gives Set5 28.416 /
0.8101 and Set14 25.990 / 0.7023 (PSNR_Y / SSIM_Y). SRCNN's older protocol
resizes the Y channel alone in float and gives 28.421 / 0.8104 and
26.000 / 0.7019; the papers' bicubic rows mostly come from that one, which
is why the two differ in the third decimal.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from srlib.data.imresize import imresize, make_lr
from srlib.data.io import list_images, load_image
from srlib.metrics import psnr, ssim

__all__ = [
    "METRICS",
    "bicubic_baseline",
    "evaluate_images",
    "format_table",
    "make_lr",
    "score_pair",
    "summarize",
]

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def score_pair(sr: np.ndarray, hr: np.ndarray, border: int) -> dict:
    """All four metrics for one SR/HR pair (uint8, same shape)."""
    return {
        "psnr_y": psnr(sr, hr, border, y_channel=True),
        "ssim_y": ssim(sr, hr, border, y_channel=True),
        "psnr_rgb": psnr(sr, hr, border, y_channel=False),
        "ssim_rgb": ssim(sr, hr, border, y_channel=False),
    }


def evaluate_images(pairs, border: int = 4) -> list[dict]:
    """Score ``(name, sr_uint8, hr_uint8)`` triples -> one row per image."""
    return [{"name": name, **score_pair(sr, hr, border)} for name, sr, hr in pairs]


def bicubic_baseline(hr_folder, scale: int = 4, border: int | None = None) -> list[dict]:
    """Rows of scores for plain bicubic upscaling of each HR image's LR."""
    border = scale if border is None else border

    def pairs():
        for path in list_images(hr_folder):
            hr, lr = make_lr(load_image(path), scale)
            yield Path(path).stem, imresize(lr, float(scale)), hr

    return evaluate_images(pairs(), border)


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric over the rows (the number papers report)."""
    if not rows:
        raise ValueError("no rows to summarize")
    return {"name": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in METRICS}}


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def format_table(rows: list[dict], title: str = "") -> str:
    """Plain-text table: one line per image, then the mean."""
    digits = {"psnr_y": 2, "ssim_y": 4, "psnr_rgb": 2, "ssim_rgb": 4}
    width = max([len("image")] + [len(str(r["name"])) for r in rows])
    header = f"{'image':<{width}}  " + "  ".join(f"{k:>8}" for k in METRICS)
    rule = "-" * len(header)

    def line(r):
        cells = "  ".join(f"{_fmt(r[k], digits[k]):>8}" for k in METRICS)
        return f"{str(r['name']):<{width}}  {cells}"

    out = ([title] if title else []) + [header, rule] + [line(r) for r in rows]
    out += [rule, line(summarize(rows))]
    return "\n".join(out) + "\n"

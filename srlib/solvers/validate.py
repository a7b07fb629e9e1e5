"""Validation on a benchmark set with the evaluation protocol (Y channel, border = scale)."""
from __future__ import annotations

from typing import Optional

import torch

from srlib.inference import to_uint8_image, upscale
from srlib.metrics import psnr, ssim


def score_model(model: torch.nn.Module, dataset, device, border: int = 4,
                max_images: Optional[int] = None, scale: int = 4) -> list[dict]:
    """Per-image PSNR/SSIM (Y and RGB) of ``model`` on a BenchmarkDataset."""
    was_training = model.training
    model.eval()
    rows = []
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    try:
        for i in range(count):
            item = dataset[i]
            sr = upscale(model, item["lr"].to(device), scale=scale)
            sr8 = to_uint8_image(sr, gray=item.get("gray", False))
            hr8 = item["hr_uint8"]
            rows.append({"name": item["name"],
                         "psnr_y": psnr(sr8, hr8, border=border, y_channel=True),
                         "ssim_y": ssim(sr8, hr8, border=border, y_channel=True),
                         "psnr_rgb": psnr(sr8, hr8, border=border, y_channel=False),
                         "ssim_rgb": ssim(sr8, hr8, border=border, y_channel=False)})
    finally:
        model.train(was_training)
    return rows


def validate(model, dataset, device, scale: int = 4, max_images: Optional[int] = None) -> dict:
    """Mean scores over the set, as logged during training (border = scale)."""
    rows = score_model(model, dataset, device, border=scale, max_images=max_images, scale=scale)
    keys = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}

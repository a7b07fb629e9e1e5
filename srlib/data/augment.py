"""Aligned random crops and dihedral augmentation for LR/HR training pairs, as uint8 numpy views
(no copies; the conversion to float happens once, at the end). Draws come from one torch
generator (the global one by default), which training seeds per item: see `sampler`."""

from __future__ import annotations

import numpy as np
import torch


def draw_patch_params(lr_hw: tuple[int, int], lr_size: int, augment: bool,
                      generator: torch.Generator | None = None) -> tuple[int, int, tuple]:
    """(y, x, (hflip, vflip, transpose)) of one random aligned crop and dihedral transform: the
    one place the draws happen, so the CPU loader and ``device_batches`` turn a seed into the
    same patch. One call draws all five (the device path makes 16 per step on the host); 30-bit
    draws modulo a few thousand positions are biased by under 1 in 10^5."""
    h, w = lr_hw
    y, x, *bits = torch.randint(1 << 30, (5,), generator=generator).tolist()
    flips = tuple(bool(b & 1) for b in bits) if augment else (False, False, False)
    return y % (h - lr_size + 1), x % (w - lr_size + 1), flips


def aligned_crop(lr: np.ndarray, hr: np.ndarray, y: int, x: int, lr_size: int, scale: int):
    """The LR patch at (y, x) and the HR patch [y*s, (y+lr_size)*s) it was computed from."""
    hy, hx, hs = y * scale, x * scale, lr_size * scale
    return lr[y:y + lr_size, x:x + lr_size], hr[hy:hy + hs, hx:hx + hs]


def dihedral(img: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """One of the 8 symmetries of the square (flips plus a transpose = 90° rotations), to
    which natural-image statistics are roughly invariant: 8x the training set for free."""
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if transpose:
        img = img.swapaxes(0, 1)
    return img

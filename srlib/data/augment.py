"""Aligned random crops and dihedral augmentation for LR/HR training pairs, as uint8 numpy views
(no copies; the conversion to float happens once, at the end). Each item's draws come from a
generator seeded with that item's own seed (see `sampler`), on the CPU loader and on the device
alike, so a seed always names the same patch."""

from __future__ import annotations

import numpy as np
import torch


def draw_patch_params(lr_hw: tuple[int, int], lr_size: int, augment: bool,
                      seed: int) -> tuple[int, int, tuple]:
    """(y, x, (hflip, vflip, transpose)) of the aligned crop and dihedral transform that
    ``seed`` draws: the one place the draws happen. One call draws all five; 30-bit draws
    modulo a few thousand positions are biased by under 1 in 10^5."""
    h, w = lr_hw
    generator = torch.Generator().manual_seed(seed)
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

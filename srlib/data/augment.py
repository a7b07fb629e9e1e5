"""Random aligned crops and dihedral augmentation of LR/HR training pairs, drawn from each
item's own seed (see `sampler`) on the CPU loader and on the device alike: a seed names one
patch. The numpy transforms are uint8 views; the conversion to float copies once, at the end."""
import numpy as np
import torch


def draw_patch_params(lr_hw: tuple[int, int], lr_size: int, augment: bool,
                      seed: int) -> tuple[int, int, tuple]:
    """(y, x, (hflip, vflip, transpose)) that ``seed`` draws, in the one place draws happen: all
    five in one call (30-bit draws modulo a few thousand positions: a bias under 1 in 10^5)."""
    h, w = lr_hw
    generator = torch.Generator().manual_seed(seed)
    y, x, *bits = torch.randint(1 << 30, (5,), generator=generator).tolist()
    flips = tuple(bool(b & 1) for b in bits) if augment else (False, False, False)
    return y % (h - lr_size + 1), x % (w - lr_size + 1), flips


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

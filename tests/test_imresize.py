"""MATLAB-compatible bicubic imresize, checked against MATLAB's own output files and the
kernel definition.

Expected values come from the x4 LR images MATLAB made for Set5/Set14 (data/README.md), from
a direct per-output-pixel sum written here from the definition (Keys cubic a=-0.5, antialias
widening, MATLAB coordinate map, edge replication), or are worked out by hand.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from srlib.data.imresize import imresize, make_lr, modcrop
from srlib.data.io import list_images, load_image

DATA = Path(__file__).resolve().parents[1] / "data"


def keys(t):
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def clamp(j, n):
    """1-based, possibly out-of-range index -> 0-based index, the edge pixel replicated."""
    return min(max(j, 1), n) - 1


def ref_1d(a, out_len, scale):
    n = len(a)
    width, kern = 4.0, keys
    if scale < 1:
        width, kern = 4.0 / scale, (lambda t: scale * keys(scale * t))
    out = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(u - width / 2)
        num = den = 0.0
        for j in range(first, first + math.ceil(width) + 2):
            w = kern(u - j)
            num += w * a[clamp(j, n)]
            den += w
        out.append(num / den)
    return np.array(out)


def ref_2d(img, out_hw, scales, quantize=False):
    """Rows resized per column, then columns per row (smaller scale first)."""
    x = img.astype(np.float64)
    order = (1, 0) if scales[1] < scales[0] else (0, 1)
    for axis in order:
        x = np.apply_along_axis(ref_1d, axis, x, out_hw[axis], scales[axis])
        if quantize:
            x = np.floor(np.clip(x, 0, 255) + 0.5)
    return x


# --- MATLAB's own output ------------------------------------------------------------


@pytest.mark.parametrize("hr_path", list_images(DATA / "Set5") + list_images(DATA / "Set14"),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_make_lr_reproduces_the_lr_files_matlab_made(hr_path):
    """imresize(modcrop(hr, 4), 1/4) as MATLAB computed it (measured: identical, every file)."""
    matlab = load_image(DATA / f"{hr_path.parent.name}_LRx4_matlab" / hr_path.name)
    ours = make_lr(load_image(hr_path), 4)[1]
    assert ours.shape == matlab.shape and ours.dtype == matlab.dtype
    diff = np.abs(ours.astype(int) - matlab)
    assert diff.max() <= 1 and np.mean(diff > 0) <= 0.002


# --- hand-worked values -------------------------------------------------------------


def test_upscale_x2_first_pixel_by_hand():
    # u = 0.75; taps j=-1..2 get Keys weights -3/128, 29/128, 111/128, -9/128.
    # Clamping sends j=-1, 0 and 1 to pixel 1, so a unit impulse at pixel 1 gives
    # (-3 + 29 + 111) / 128 = 1.0703125 (mirror folding would give 1.09375).
    row = np.array([[1.0, 0.0, 0.0, 0.0]])
    out = imresize(row, 2.0)
    assert out.shape == (2, 8)
    assert out[0, 0] == pytest.approx(137 / 128, abs=1e-12)
    # x=2: u = 1.25, j=0 (clamped onto pixel 1) and j=1 weigh -9/128 and 111/128.
    assert out[0, 1] == pytest.approx(102 / 128, abs=1e-12)
    np.testing.assert_allclose(out[1], out[0])  # a single input row just gets copied


def test_downscale_x2_antialiased_first_pixel_by_hand():
    # Shrinking by 2 widens Keys to 8 taps: u = 1.5, weights on j=-2..5 are
    # (-3, -9, 29, 111, 111, 29, -9, -3)/256 after normalisation. j=-2..0 are clamped
    # onto pixel 1, which also holds j=1: (-3 - 9 + 29 + 111) / 256 = 0.5.
    row = np.zeros((1, 8))
    row[0, 0] = 1.0
    out = imresize(row, 0.5)
    assert out.shape == (1, 4)
    assert out[0, 0] == pytest.approx(0.5, abs=1e-12)


# --- against the direct per-pixel definition ----------------------------------------


@pytest.mark.parametrize(
    "shape, scale",
    [((7, 9), 0.5), ((12, 10), 0.25), ((5, 6), 2.0), ((4, 4), 3.0), ((9, 11), 1 / 3),
     ((6, 7), 2.5)],
)
def test_float_matches_definition(shape, scale):
    img = np.random.default_rng(0).random(shape)
    out = imresize(img, scale)
    out_hw = tuple(math.ceil(scale * n) for n in shape)
    np.testing.assert_allclose(out, ref_2d(img, out_hw, (scale, scale)), atol=1e-12)


def test_output_shape_matches_definition_with_per_axis_scales():
    img = np.random.default_rng(1).random((6, 8))
    out = imresize(img, output_shape=(3, 16))
    np.testing.assert_allclose(out, ref_2d(img, (3, 16), (0.5, 2.0)), atol=1e-12)


@pytest.mark.parametrize("out_hw", [(3, 16), (12, 4)])
def test_uint8_rounds_after_each_pass_in_matlab_order(out_hw):
    img = np.random.default_rng(2).integers(0, 256, (6, 8)).astype(np.uint8)
    scales = (out_hw[0] / 6, out_hw[1] / 8)
    out = imresize(img, output_shape=out_hw)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref_2d(img, out_hw, scales, quantize=True))


def test_uint8_rounds_half_away_from_zero():
    # Upscaling x2 uses dyadic weights (k/128), so this row lands exactly on .5 values.
    row = np.array([[0, 16, 0, 8, 6, 19]], dtype=np.uint8)
    exact = ref_1d(row[0].astype(float), 12, 2.0)
    halves = np.isclose(exact % 1, 0.5)
    assert halves.any()  # the case this test is about
    out = imresize(row, 2.0)[0].astype(float)
    positive = halves & (exact > 0)
    assert (np.floor(exact[positive]) % 2 == 0).any()  # where round-half-even would go down
    np.testing.assert_array_equal(out[positive], np.floor(exact[positive]) + 1)
    np.testing.assert_array_equal(out, np.floor(np.clip(exact, 0, 255) + 0.5))


def test_uint8_clips_overshoot_but_float_does_not():
    step = np.zeros((8, 8), dtype=np.uint8)
    step[:, 4:] = 255
    as_float = imresize(step.astype(np.float64), 2.0)
    assert as_float.min() < 0 and as_float.max() > 255  # cubic rings at the edge
    as_uint8 = imresize(step, 2.0)
    assert as_uint8.min() == 0 and as_uint8.max() == 255


# --- sizes, types, channels ------------------------------------------------------


@pytest.mark.parametrize(
    "shape, scale, expected",
    [((5, 7), 0.5, (3, 4)), ((5, 7), 1 / 3, (2, 3)), ((5, 7), 2.5, (13, 18)),
     ((361, 250), 0.25, (91, 63))],
)
def test_output_size_is_ceil(shape, scale, expected):
    assert imresize(np.zeros(shape), scale).shape == expected


def test_output_shape_argument_and_argument_errors():
    img = np.zeros((10, 12, 3))
    assert imresize(img, output_shape=(4, 9)).shape == (4, 9, 3)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, scale=0.5, output_shape=(5, 6))


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 2.0, 4.0])
def test_constant_image_stays_constant(scale):
    img = np.full((13, 17, 3), 137, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8 and np.all(out == 137)
    flat = imresize(np.full((13, 17), 0.3, dtype=np.float32), scale)
    assert flat.dtype == np.float32
    np.testing.assert_allclose(flat, 0.3, atol=1e-6)


def test_channels_are_resized_independently():
    img = np.random.default_rng(3).integers(0, 256, (10, 14, 3)).astype(np.uint8)
    out = imresize(img, 0.5)
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], imresize(img[..., c], 0.5))
    assert imresize(img[..., 0], 0.5).ndim == 2


def test_large_image_output_size():
    """A DIV2K-sized image (speed is measured in benchmarks/, not asserted here)."""
    img = np.random.default_rng(6).integers(0, 256, (1356, 2040, 3)).astype(np.uint8)
    out = imresize(img, 0.25)
    assert out.shape == (339, 510, 3)


def test_modcrop_keeps_top_left():
    img = np.arange(10 * 7 * 3).reshape(10, 7, 3)
    out = modcrop(img, 4)
    assert out.shape == (8, 4, 3)
    np.testing.assert_array_equal(out, img[:8, :4])
    assert modcrop(img[..., 0], 3).shape == (9, 6)
    assert modcrop(np.zeros((8, 12)), 4).shape == (8, 12)

"""PSNR / SSIM under the SR protocol, against closed forms and a brute-force SSIM."""

import math
import warnings

import numpy as np
import pytest

from srlib.metrics import psnr, rgb_to_y, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def rgb(color, shape=(24, 24)):
    return np.broadcast_to(np.array(color, dtype=np.uint8), shape + (3,)).copy()


def gray(value, shape=(24, 24)):
    return np.full(shape, value, dtype=np.uint8)


def brute_ssim(a, b):
    """Wang et al.: Gaussian-weighted stats over every full 11x11 window."""
    t = np.arange(11) - 5
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    a, b = a.astype(np.float64), b.astype(np.float64)
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (g * pa).sum(), (g * pb).sum()
            va, vb = (g * (pa - ma) ** 2).sum(), (g * (pb - mb) ** 2).sum()
            cov = (g * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + C1) * (2 * cov + C2))
                        / ((ma**2 + mb**2 + C1) * (va + vb + C2)))
    return float(np.mean(vals))


# --- luma -----------------------------------------------------------------------


def test_y_of_pure_colours():
    assert rgb_to_y(rgb((255, 255, 255)))[0, 0] == 235
    assert rgb_to_y(rgb((0, 0, 0)))[0, 0] == 16
    # BT.601: 16 + 65.481, 16 + 128.553, 16 + 24.966, rounded as MATLAB does for uint8
    assert rgb_to_y(rgb((255, 0, 0)))[0, 0] == 81
    assert rgb_to_y(rgb((0, 255, 0)))[0, 0] == 145
    assert rgb_to_y(rgb((0, 0, 255)))[0, 0] == 41


def test_y_of_float_input_is_not_rounded():
    red = np.zeros((2, 2, 3))
    red[..., 0] = 1.0
    np.testing.assert_allclose(rgb_to_y(red), 16 + 65.481)


# --- PSNR -----------------------------------------------------------------------


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(img, img.copy()) == math.inf
        assert psnr(img, img, y_channel=False) == math.inf
        assert ssim(img, img.copy()) == 1.0
        assert ssim(img[..., 0], img[..., 0]) == 1.0


def test_psnr_of_a_known_gray_offset():
    # MSE = 10^2 = 100 everywhere -> 10 log10(255^2 / 100)
    expected = 10 * math.log10(255**2 / 100)
    assert psnr(gray(110), gray(100)) == pytest.approx(expected, abs=1e-12)


def test_single_channel_is_scored_on_raw_gray_values():
    # Through the Y formula the 10-level offset would shrink to ~8.6 levels.
    expected = 10 * math.log10(255**2 / 100)
    assert psnr(gray(110), gray(100), y_channel=True) == pytest.approx(expected, abs=1e-12)
    assert psnr(gray(110)[..., None], gray(100)[..., None]) == pytest.approx(expected, abs=1e-12)


def test_black_vs_white_in_y_and_in_rgb():
    black, white = rgb((0, 0, 0)), rgb((255, 255, 255))
    assert psnr(black, white) == pytest.approx(20 * math.log10(255 / 219), abs=1e-12)
    assert psnr(black, white, y_channel=False) == pytest.approx(0.0, abs=1e-12)


def test_rgb_psnr_averages_mse_over_all_channels():
    hr = rgb((100, 100, 100))
    sr = rgb((110, 100, 100))  # only R is off: MSE = 100 / 3
    expected = 10 * math.log10(3 * 255**2 / 100)
    assert psnr(sr, hr, y_channel=False) == pytest.approx(expected, abs=1e-12)


def test_border_is_removed_before_measuring():
    hr = gray(100, (20, 20))
    sr = hr.copy()
    sr[:4, :] = 0
    sr[:, -4:] = 0
    assert psnr(sr, hr, border=4) == math.inf
    assert math.isfinite(psnr(sr, hr, border=3))
    sr2 = hr.copy()
    sr2[10, 10] = 120  # one pixel off by 20 inside the 12x12 kept region
    assert psnr(sr2, hr, border=4) == pytest.approx(10 * math.log10(255**2 * 144 / 400), abs=1e-12)
    assert psnr(sr2, hr, border=0) == pytest.approx(10 * math.log10(255**2 * 400 / 400), abs=1e-12)


def test_float_inputs_score_like_their_uint8_quantisation():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    sr = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    assert psnr(sr / 255.0, hr / 255.0) == pytest.approx(psnr(sr, hr), abs=1e-12)
    assert ssim(sr / 255.0, hr) == pytest.approx(ssim(sr, hr), abs=1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 24, 3\)"):
        psnr(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(20, 20\).*\(20, 20, 3\)"):
        ssim(np.zeros((20, 20), np.uint8), np.zeros((20, 20, 3), np.uint8))


# --- SSIM -----------------------------------------------------------------------


def test_ssim_of_two_flat_images_has_closed_form():
    # No variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)
    assert ssim(gray(110), gray(100), border=0) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_brute_force_windows():
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (22, 25)).astype(np.uint8)
    sr = np.clip(hr + rng.normal(0, 25, hr.shape), 0, 255).astype(np.uint8)
    expected = brute_ssim(sr[2:-2, 2:-2], hr[2:-2, 2:-2])
    assert ssim(sr, hr, border=2) == pytest.approx(expected, abs=1e-12)


def test_rgb_ssim_is_the_mean_over_channels_and_y_ssim_uses_luma():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (26, 26, 3)).astype(np.uint8)
    sr = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype(np.uint8)
    per_channel = [brute_ssim(sr[..., c], hr[..., c]) for c in range(3)]
    assert ssim(sr, hr, border=0, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-12)
    expected = brute_ssim(rgb_to_y(sr), rgb_to_y(hr))
    assert ssim(sr, hr, border=0) == pytest.approx(expected, abs=1e-12)


def test_ssim_drops_with_noise():
    rng = np.random.default_rng(4)
    hr = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    mild = np.clip(hr + rng.normal(0, 5, hr.shape), 0, 255).astype(np.uint8)
    strong = np.clip(hr + rng.normal(0, 40, hr.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ssim(mild, hr) > ssim(strong, hr) > 0.0

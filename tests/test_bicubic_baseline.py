"""Calibration: bicubic x4 on the shipped Set5/Set14 must reproduce the literature.

If these numbers drift, resizing or scoring changed, and no model figure in
this project is comparable to a paper any more. Also covers the image IO the
benchmark relies on (listing, loading, corrupt files).
"""

import math
from pathlib import Path

import numpy as np
import pytest

from srlib.data.imresize import imresize, make_lr, modcrop
from srlib.data.io import (
    ImageReadError,
    list_images,
    load_image,
    save_image,
    to_float_tensor,
    to_uint8,
)
from srlib.evaluate import bicubic_baseline, format_table
from srlib.metrics import psnr, rgb_to_y, score_pair, ssim, summarize

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def set5():
    return bicubic_baseline(DATA / "Set5", scale=4)


@pytest.fixture(scope="module")
def set14():
    return bicubic_baseline(DATA / "Set14", scale=4)


# --- the baseline -------------------------------------------------------------------


def test_set5_bicubic_matches_literature(set5):
    assert [r["name"] for r in set5] == ["baby", "bird", "butterfly", "head", "woman"]
    mean = summarize(set5)
    # Papers print 28.42 (SRCNN, VDSR, EDSR, ...) or 28.43 (SRGAN), i.e. [28.415, 28.435).
    assert 28.415 <= mean["psnr_y"] < 28.435
    assert mean["ssim_y"] == pytest.approx(0.8104, abs=0.0015)
    assert mean["psnr_rgb"] < mean["psnr_y"]  # chroma errors only lower RGB PSNR


def test_set14_bicubic_matches_literature(set14):
    assert len(set14) == 14
    mean = summarize(set14)
    # Papers print 25.99 or 26.00.
    assert 25.985 <= mean["psnr_y"] < 26.005
    assert 0.700 <= mean["ssim_y"] <= 0.705


def test_gray_bridge_is_scored_on_raw_values(set14):
    bridge = next(r for r in set14 if r["name"] == "bridge")
    assert bridge["psnr_y"] == bridge["psnr_rgb"]
    hr, lr = make_lr(load_image(DATA / "Set14" / "bridge.png"), 4)
    sr = imresize(lr, 4.0)
    as_rgb = psnr(np.repeat(sr[..., None], 3, -1), np.repeat(hr[..., None], 3, -1))
    assert as_rgb > bridge["psnr_y"] + 0.5  # the 16..235 range would flatter it


def test_srcnn_protocol_reproduces_published_per_image_numbers():
    """SRCNN's demo_SR.m resizes the (uint8) Y channel in float; its Set5 x4 bicubic
    table reads baby 31.78, bird 30.18, butterfly 22.10, head 31.59, woman 26.46."""
    scores = []
    for path in list_images(DATA / "Set5"):
        y = modcrop(rgb_to_y(load_image(path)), 4) / 255.0
        up = imresize(imresize(y, 0.25), 4.0)
        scores.append(psnr(up, y, border=4))
    np.testing.assert_allclose(np.round(scores, 2), [31.78, 30.18, 22.10, 31.59, 26.46], atol=1e-9)


def test_make_lr_crops_to_a_multiple_of_the_scale():
    hr = load_image(DATA / "Set14" / "comic.png")
    assert hr.shape == (361, 250, 3)
    crop, lr = make_lr(hr, 4)
    assert crop.shape == (360, 248, 3) and lr.shape == (90, 62, 3)
    assert crop.dtype == lr.dtype == np.uint8
    np.testing.assert_array_equal(crop, hr[:360, :248])


def test_score_pair_and_table():
    hr = load_image(DATA / "Set5" / "bird.png")
    noisy = np.clip(hr.astype(int) + 3, 0, 255).astype(np.uint8)
    same, row = score_pair(hr, hr, border=4), score_pair(noisy, hr, border=4)
    assert same["psnr_y"] == math.inf and same["ssim_y"] == 1.0
    assert row["psnr_y"] == pytest.approx(psnr(noisy, hr, 4))
    assert row["ssim_rgb"] == pytest.approx(ssim(noisy, hr, 4, y_channel=False))
    rows = [{"name": "noisy", **row}]
    lines = format_table(rows + [summarize(rows)], title="bird").splitlines()
    assert lines[0] == "bird" and lines[-1].split()[0] == "mean"
    assert f"{row['psnr_y']:.2f}" in lines[-1] and f"{row['ssim_y']:.4f}" in lines[-1]
    assert format_table([{"name": "x"}], ("name", "psnr_y")).splitlines()[-1].split() == ["x", "-"]


# --- image IO -----------------------------------------------------------------------


def test_load_image_modes():
    colour = load_image(DATA / "Set5" / "baby.png")
    assert colour.dtype == np.uint8 and colour.shape == (512, 512, 3)
    bridge = load_image(DATA / "Set14" / "bridge.png")
    assert bridge.dtype == np.uint8 and bridge.shape == (512, 512)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_png_is_an_error_naming_the_file(tmp_path, cut):
    data = (DATA / "Set5" / "bird.png").read_bytes()
    bad = tmp_path / "bird_truncated.png"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ImageReadError, match="bird_truncated.png"):
        load_image(bad)


def test_corrupt_and_missing_files_are_errors(tmp_path):
    data = bytearray((DATA / "Set5" / "bird.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    (tmp_path / "notes.png").write_text("not an image")
    for name in ["flipped.png", "notes.png", "absent.png"]:
        with pytest.raises(ImageReadError, match=name) as info:
            load_image(tmp_path / name)
        assert isinstance(info.value, ValueError)


def test_list_images(tmp_path):
    assert [p.name for p in list_images(DATA / "Set5")][0] == "baby.png"
    assert len(list_images(DATA / "Set14")) == 14
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        list_images(tmp_path / "does_not_exist")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    out = save_image(tmp_path / "a" / "b" / "img.png", img)
    np.testing.assert_array_equal(load_image(out), img)
    assert [p.name for p in out.parent.iterdir()] == ["img.png"]  # no temp file left
    g = img[..., 0]
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "g.png", g)), g)
    f = np.array([[0.0, 0.5, 1.0, 1.7, -0.2]])  # clamped, rounded
    saved = save_image(tmp_path / "f.png", f)
    np.testing.assert_array_equal(load_image(saved), [[0, 128, 255, 255, 0]])


def test_tensor_conversions_round_trip():
    img = np.random.default_rng(1).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    t = to_float_tensor(img)
    assert tuple(t.shape) == (3, 5, 6) and float(t.max()) <= 1.0
    np.testing.assert_array_equal(to_uint8(t), img)
    np.testing.assert_array_equal(to_uint8(t[None]), img)
    assert tuple(to_float_tensor(img[..., 0]).shape) == (1, 5, 6)
    np.testing.assert_array_equal(to_uint8(to_float_tensor(img[..., 0])), img[..., 0])
    np.testing.assert_array_equal(to_uint8(np.array([[0.2 / 255, 0.5 / 255, 2.0]])), [[0, 1, 255]])

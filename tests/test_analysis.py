"""srlib.analysis: numbers on synthetic inputs with known answers."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srlib import analysis
from srlib.data.imresize import imresize
from srlib.data.io import save_image
from srlib.evaluate import bicubic_baseline, summarize
from srlib.losses import PerceptualLoss
from srlib.models import MSRResNet

ROOT = Path(__file__).resolve().parents[1]


def smooth_image(h=64, w=48, seed=0):
    """A smooth colour image (sums of low-frequency waves), values well inside 0..255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 16.0
    chans = [100 + 60 * np.sin(x * rng.uniform(0.5, 2) + rng.uniform(0, 6))
             * np.cos(y * rng.uniform(0.5, 2)) for _ in range(3)]
    return np.clip(np.stack(chans, axis=2), 0, 255).round().astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    save_image(d / "a.png", smooth_image(64, 48, 0))
    save_image(d / "b.png", smooth_image(50, 66, 1))  # not a multiple of 4: modcrop needed
    return d


# --------------------------------------------------------------------------- colour shift

def test_colour_shift_of_plus_five_in_red_is_plus_five():
    hr = smooth_image()
    sr = hr.copy()
    sr[..., 0] += 5
    assert analysis.colour_shift(sr, hr) == pytest.approx([5.0, 0.0, 0.0])


def test_colour_shift_float_and_tensor_inputs_use_0_255_units():
    hr = smooth_image().astype(np.float64) / 255.0
    sr = hr + np.array([0.0, -10 / 255, 2 / 255])
    assert analysis.colour_shift(sr, hr) == pytest.approx([0.0, -10.0, 2.0])
    t_sr = torch.from_numpy(sr).permute(2, 0, 1)
    t_hr = torch.from_numpy(hr).permute(2, 0, 1)
    assert analysis.colour_shift(t_sr, t_hr) == pytest.approx([0.0, -10.0, 2.0])


def test_colour_shift_border_and_gray():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:2] = 200  # only inside the border
    assert analysis.colour_shift(sr, hr, border=2) == pytest.approx([0, 0, 0])
    gray = np.full((10, 10), 50, np.uint8)
    assert analysis.colour_shift(gray + 3, gray) == pytest.approx([3, 3, 3])
    with pytest.raises(ValueError):
        analysis.colour_shift(hr, hr[:10])


def test_colour_shift_rows_mean_and_abs():
    hr = smooth_image()
    a, b = hr.copy(), hr.copy()
    a[..., 0] += 4
    b[..., 2] -= 2
    rows = analysis.colour_shift_rows([("a", a, hr), ("b", b, hr)], border=0)
    assert [r["name"] for r in rows] == ["a", "b", "mean"]
    assert rows[-1]["R"] == pytest.approx(2.0)
    assert rows[-1]["B"] == pytest.approx(-1.0)
    assert rows[0]["abs"] == pytest.approx(4 / 3)


def test_crop_tensor():
    img = smooth_image()
    t = analysis.crop_tensor(img, (3, 5, 8, 10))
    assert t.shape == (1, 3, 8, 10)
    assert float(t[0, 1, 0, 0]) == pytest.approx(img[3, 5, 1] / 255)


# --------------------------------------------------------------------------- resize and protocol

def test_resize_methods_shapes_and_matlab_identity():
    hr = smooth_image(64, 48)
    for method in analysis.RESIZE_METHODS:
        lr = analysis.resize(hr, 0.25, method)
        assert lr.shape == (16, 12, 3) and lr.dtype == np.uint8
    assert np.array_equal(analysis.resize(hr, 0.25, "matlab"), imresize(hr, 0.25))
    gray = hr[..., 0]
    assert analysis.resize(gray, 0.25, "torchvision").shape == (16, 12)
    with pytest.raises(ValueError):
        analysis.resize(hr, 0.25, "opencv")
    with pytest.raises(TypeError):
        analysis.resize(hr.astype(np.float32), 0.25)


def test_resize_comparison_reference_row_is_exact(folder):
    rows = analysis.resize_comparison(folder, 4)
    by = {r["method"]: r for r in rows}
    assert set(by) == set(analysis.RESIZE_METHODS)
    assert math.isinf(by["matlab"]["lr_psnr"]) and by["matlab"]["lr_max_diff"] == 0
    assert by["matlab"]["psnr_y"] == pytest.approx(summarize(bicubic_baseline(folder, 4))["psnr_y"])
    assert by["pillow"]["lr_psnr"] > 30  # antialiased bicubic: close to MATLAB


def test_protocol_table_first_row_is_the_baseline(folder):
    rows = analysis.protocol_table(folder, 4)
    assert len(rows) == 5
    assert rows[0]["border"] == 4 and rows[1]["border"] == 0
    base = summarize(bicubic_baseline(folder, 4))
    assert rows[0]["psnr"] == pytest.approx(base["psnr_y"])
    assert rows[2]["psnr"] == pytest.approx(base["psnr_rgb"])


def test_protocol_full_range_luma_is_lower_by_about_1_3_db(root):
    # Full-range luma scales differences by 255/219: PSNR drops by 20*log10(255/219) = 1.32 dB
    rows = analysis.protocol_table(root / "data" / "Set5", 4)
    assert rows[0]["psnr"] - rows[4]["psnr"] == pytest.approx(1.32, abs=0.05)


# --------------------------------------------------------------------------- tables

def test_format_rows_and_csv(tmp_path):
    rows = [{"method": "a", "psnr_y": 28.4166, "ssim_y": 0.81},
            {"method": "bb", "psnr_y": None, "ssim_y": float("inf")}]
    text = analysis.format_rows(rows, ["method", "psnr_y", "ssim_y"], title="T")
    lines = text.splitlines()
    assert lines[0] == "T" and "28.42" in lines[3] and "0.8100" in lines[3]
    assert lines[4].split() == ["bb", "-", "inf"]
    path = analysis.save_csv(rows, tmp_path / "out" / "t.csv", ["method", "psnr_y"])
    assert path.read_text().splitlines() == ["method,psnr_y", "a,28.4166", "bb,"]
    assert analysis.format_mapping({"x": 1.234, "long": "v"}).splitlines() == ["x     1.23",
                                                                                "long  v"]


def test_parameter_table_matches_design_count():
    rows = analysis.parameter_table({"d": MSRResNet(), "q": MSRResNet(num_feat=32, num_block=4)})
    assert [r["group"] for r in rows] == ["conv_first", "body", "upconv1", "upconv2", "conv_hr",
                                          "conv_last", "total"]
    assert rows[-1]["d"] == 1_517_571
    assert sum(r["q"] for r in rows[:-1]) == rows[-1]["q"]


def test_benchmark_item_by_name(folder):
    from srlib.data.datasets import BenchmarkDataset
    item = analysis.benchmark_item(folder, "b", 4)
    ref = BenchmarkDataset(folder, 4)[1]
    assert item["name"] == ref["name"] == "b" and item["gray"] is False
    assert torch.equal(item["lr"], ref["lr"]) and np.array_equal(item["hr_uint8"], ref["hr_uint8"])
    with pytest.raises(KeyError, match="no image named 'c'"):
        analysis.benchmark_item(folder, "c", 4)


def test_folder_summary(folder):
    s = analysis.folder_summary(folder, patch_size=48, scale=4)  # LR sides 16x12 and 12x16
    assert s["images"] == 2 and s["smaller_than_patch"] == 0
    assert s["height (min, median, max)"] == (50, 57, 64)
    assert analysis.folder_summary(folder, patch_size=52, scale=4)["smaller_than_patch"] == 2


def test_training_data_quick_and_unprepared(tmp_path):
    from srlib.config import from_dict
    cfg = from_dict({"logdir": str(tmp_path / "r"), "model": "msrresnet", "iterations": 1,
                     "patch_size": 96, "dataset": {"root": str(ROOT / "data/T91"), "name": "t91"}})
    assert analysis.training_data(cfg)["images"] == 91
    cfg.dataset.name, cfg.dataset.root = "div2k", str(tmp_path / "div2k")
    out = analysis.training_data(cfg, prepare=False)
    assert out["images"] == 0 and "prepare" in out["note"]


def test_augmented_patches(folder):
    pairs = analysis.augmented_patches(folder, patch_size=32, scale=4, count=3)
    assert len(pairs) == 2  # only two images in the folder
    lr, hr = pairs[0]
    assert lr.shape == (8, 8, 3) and hr.shape == (32, 32, 3) and hr.dtype == np.uint8


# --------------------------------------------------------------------------- VGG input and colour drift

def test_vgg_input_stats_of_the_imagenet_mean_image():
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    img = mean.view(3, 1, 1).expand(3, 8, 8).clone()
    rows = {r["input"]: r for r in analysis.vgg_input_stats(img, mean, std)}
    right = rows["(x - mean) / std"]
    assert right["mean_R"] == pytest.approx(0, abs=1e-6)
    assert rows["x raw, not normalised"]["mean_G"] == pytest.approx(0.456)
    # 2x - 1 with [0,1] constants: (2m - 1 - m) / s = (m - 1) / s
    assert rows["2x - 1 with [0,1] mean/std"]["mean_B"] == pytest.approx((0.406 - 1) / 0.225, 1e-5)


@pytest.fixture(scope="module")
def tiny_vgg_loss():
    with pytest.warns(UserWarning):
        return PerceptualLoss(layer="vgg12", pretrained=False)


def test_colour_drift_one_sided_normalisation_creates_a_cast(tiny_vgg_loss):
    hr = torch.from_numpy(smooth_image(32, 32)).permute(2, 0, 1)[None].float() / 255
    rows = analysis.colour_drift(tiny_vgg_loss, hr.clone(), hr, steps=15, lr=5e-3)
    by = {r["setup"]: r for r in rows}
    assert set(by) == set(analysis.VGG_LOSS_SETUPS)
    assert by["right: both (x - mean) / std"]["before"] == 0
    # starting at the optimum, a consistent set-up stays there; the one-sided one moves away
    assert by["right: both (x - mean) / std"]["after"] < 0.5
    assert by["HR normalised, SR raw"]["after"] > 5 * by["right: both (x - mean) / std"]["after"]


def test_colour_drift_reports_the_cast_before(tiny_vgg_loss):
    hr = torch.from_numpy(smooth_image(32, 32)).permute(2, 0, 1)[None].float() / 255
    rows = analysis.colour_drift(tiny_vgg_loss, hr, hr, cast=(12, 0, -12), steps=2,
                                 setups=["both raw [0,1]"])
    assert len(rows) == 1 and rows[0]["before"] == pytest.approx(8.0, abs=1e-4)


# --------------------------------------------------------------------------- output range

def test_wrap_to_uint8_wraps_and_matches_clamped_inside_range():
    x = torch.tensor([1.02, -0.02, 0.5, 0.0]).view(1, 1, 4).expand(3, 1, 4)
    out = analysis.wrap_to_uint8(x)
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [4, 251, 128, 0]  # 260 -> 4, -5 -> 251


def test_out_of_range():
    x = torch.tensor([-0.5, 0.2, 0.5, 1.5])
    r = analysis.out_of_range(x)
    assert r == {"below_0": 0.25, "above_1": 0.25, "min": -0.5, "max": 1.5}


def test_raw_output_is_unclamped():
    model = torch.nn.Sequential(torch.nn.Upsample(scale_factor=4), torch.nn.Identity())
    model.add_module("shift", torch.nn.Conv2d(3, 3, 1))
    with torch.no_grad():
        model.shift.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 3)
        model.shift.bias.zero_()
    out = analysis.raw_output(model, torch.full((3, 2, 2), 0.5))
    assert out.shape == (3, 8, 8) and float(out.max()) == pytest.approx(1.5)


# --------------------------------------------------------------------------- runs, benchmark, tables

def _write_config(dir_: Path, name: str, logdir: str, solver: str = "std") -> Path:
    path = dir_ / "configs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"logdir": logdir, "model": "msrresnet", "solver": solver}))
    return path


def test_run_dir_and_find_checkpoints(tmp_path):
    std = _write_config(tmp_path, "a", "runs/a")
    gan = _write_config(tmp_path, "g", "runs/g", solver="gan")
    missing = _write_config(tmp_path, "m", "runs/m")
    assert analysis.run_dir(std) == tmp_path / "runs" / "a"  # relative to the project
    (tmp_path / "runs/a").mkdir(parents=True)
    (tmp_path / "runs/a/best.pt").write_bytes(b"x")
    (tmp_path / "runs/g").mkdir(parents=True)
    (tmp_path / "runs/g/last.pt").write_bytes(b"x")
    found, notes = analysis.find_checkpoints({"A": std, "G": gan, "M": missing, "none": None})
    assert found == {"A": tmp_path / "runs/a/best.pt", "G": tmp_path / "runs/g/last.pt"}
    assert len(notes) == 1 and notes[0].startswith("M: no run")


def test_benchmark_results_table_and_perception(folder):
    torch.manual_seed(0)
    model = MSRResNet(num_feat=4, num_block=1)
    bench = analysis.benchmark({"tiny": model}, {"Set5": folder}, device="cpu")
    s = bench["Set5"]
    assert list(s) == ["HR", "Bicubic", "tiny"]
    assert s["Bicubic"]["mean"]["psnr_y"] == pytest.approx(
        summarize(bicubic_baseline(folder, 4))["psnr_y"])
    assert s["tiny"]["images"]["b"].shape == s["HR"]["images"]["b"].shape == (48, 64, 3)
    rows = analysis.results_table(bench, "Set5", source="test")
    assert [r["source"] for r in rows[:2]] == ["test", "test"]
    published = [r for r in rows[2:]]
    assert {r["method"] for r in published} >= {"Bicubic", "SRResNet-MSE", "SRGAN-VGG54"}
    assert all(r["source"] != "test" for r in published)
    shifts = analysis.mean_colour_shifts(s)
    assert set(shifts) == {"Bicubic", "tiny"}
    pd = analysis.perception_distortion(bench, "Set5")
    assert [r["method"] for r in pd] == ["Bicubic", "tiny"]
    assert all(0 < r["detail_ratio"] for r in pd)


def test_high_frequency_ratio():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert analysis.high_frequency_ratio(hr, hr) == pytest.approx(1.0)
    blurred = imresize(imresize(hr, 0.5), 2.0)
    assert analysis.high_frequency_ratio(blurred, hr) < 0.5


def test_load_lpips_explains_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    fn, reason = analysis.load_lpips()
    assert fn is None and "lpips" in reason


def test_resolve_device():
    assert analysis.resolve_device("cpu") == "cpu"
    assert analysis.resolve_device("auto") in ("cpu", "cuda")


def test_perceptual_from_config_needs_a_perceptual_term(tmp_path):
    from srlib.config import from_dict
    cfg = from_dict({"logdir": str(tmp_path / "r"), "model": "msrresnet", "iterations": 1,
                     "dataset": {"root": str(ROOT / "data/T91"), "name": "t91"}})
    with pytest.raises(ValueError, match="no perceptual"):
        analysis.perceptual_from_config(cfg)

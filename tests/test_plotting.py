"""srlib.plotting: each figure builds with the expected panels and saves."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from srlib import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _img(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def logdir(tmp_path):
    records = [{"kind": "note", "iteration": 0, "text": "random VGG"}]
    for i in range(1, 5):
        records.append({"kind": "train", "iteration": 10 * i, "loss": 1.0 / i, "l1": 0.1 / i,
                        "perceptual": 0.5 / i, "adversarial": 0.7, "d_loss": 1.2,
                        "d_real": 0.6, "d_fake": 0.4, "it_per_s": 3.0, "lr": 1e-4})
        records.append({"kind": "val", "iteration": 10 * i, "psnr_y": 28 + i, "ssim_y": 0.8})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    return tmp_path


def test_load_metrics_groups_by_kind(logdir):
    m = plotting.load_metrics(logdir)
    assert [len(m[k]) for k in ("train", "val", "note")] == [4, 4, 1]
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plotting.load_metrics(logdir / "nothing")


def test_load_metrics_keeps_only_the_latest_run(logdir):
    path = logdir / "metrics.jsonl"
    again = [{"kind": "note", "iteration": 0, "text": "second run"},
             {"kind": "train", "iteration": 10, "loss": 0.5},
             {"kind": "val", "iteration": 10, "psnr_y": 29.0}]
    path.write_text(path.read_text() + "".join(json.dumps(r) + "\n" for r in again))
    m = plotting.load_metrics(logdir)
    assert [len(m[k]) for k in ("train", "val", "note")] == [1, 1, 1]
    assert m["note"][0]["text"] == "second run"


def test_training_and_gan_curves(logdir):
    m = plotting.load_metrics(logdir)
    fig = plotting.plot_training_curves(m, bicubic_psnr=28.42, title="t")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_lines()[-1].get_ydata()[0] == pytest.approx(28.42)
    fig = plotting.plot_gan_curves(m, bicubic_psnr=28.42)
    assert len(fig.axes) == 3
    terms = {line.get_label() for line in fig.axes[1].get_lines()}
    assert terms == {"l1", "perceptual", "adversarial"}


def test_detail_box_finds_the_textured_square():
    img = np.full((100, 120), 128, np.uint8)
    img[60:80, 20:40] = _img(20, 20)[..., 0]
    top, left, h, w = plotting.detail_box(img, size=20, stride=4)
    assert (h, w) == (20, 20)
    assert abs(top - 60) <= 4 and abs(left - 20) <= 4


def test_comparison_grid_has_a_zoom_inset_per_panel():
    cols = {m: {"a": _img(seed=1), "b": _img(30, 30, 2)} for m in ("Bicubic", "SR", "HR")}
    fig = plotting.comparison_grid(cols, ["a", "b"], boxes={"a": (5, 5, 10, 10)},
                                   captions={"SR": {"a": "30.00 dB"}})
    assert len(fig.axes) == 6
    assert all(len(ax.child_axes) == 1 for ax in fig.axes)
    inset = fig.axes[0].child_axes[0]
    assert inset.get_xlim() == (4.5, 14.5)
    assert fig.axes[1].get_title() == "SR\n30.00 dB"


def test_benchmark_grid_and_save(tmp_path):
    hr = {"a": _img(64, 64, 3)}
    rows = [{"name": "a", "psnr_y": 30.0, "ssim_y": 0.9}]
    bench_set = {"HR": {"images": hr}, "Bicubic": {"images": hr, "rows": rows},
                 "SR": {"images": hr, "rows": rows}}
    fig = plotting.benchmark_grid(bench_set, ["Bicubic", "SR", "HR"], ["a"])
    assert len(fig.axes) == 3
    path = plotting.save(fig, tmp_path / "out" / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_row_difference_and_patches():
    fig = plotting.image_row({"a": _img(), "b": _img(seed=1)}, box=(0, 0, 8, 8))
    assert len(fig.axes) == 2 and fig.axes[0].get_images()[0].get_array().shape[:2] == (8, 8)
    imgs = {"matlab": _img(), "pillow": _img(seed=1), "gray": _img()}
    fig = plotting.difference_figure(imgs, "matlab", gain=5)
    assert len(fig.axes) == 3
    assert fig.axes[2].get_images()[0].get_array().max() == 0  # identical image: zero difference
    pairs = [(_img(8, 8), _img(32, 32)) for _ in range(3)]
    fig = plotting.patch_grid(pairs)
    assert len(fig.axes) == 6


def test_clamp_figure_zooms_where_wrapping_differs():
    import torch
    raw = torch.full((3, 80, 80), 0.5)
    raw[:, 60:70, 10:20] = 1.1  # out of range: wraps to dark
    fig = plotting.clamp_figure(_img(80, 80), raw, size=16)
    assert len(fig.axes) == 3
    wrapped = fig.axes[2].get_images()[0].get_array()
    clamped = fig.axes[1].get_images()[0].get_array()
    assert wrapped.shape[:2] == (16, 16) and (wrapped != clamped).any()


def test_pixel_shuffle_figure_follows_pixel_shuffle():
    fig = plotting.pixel_shuffle_figure(factor=2, size=3)
    assert len(fig.axes) == 4 + 1 + 1
    out = fig.axes[-1]
    labels = {(round(t.get_position()[0] - 0.5), round(5.5 - t.get_position()[1])): t.get_text()
              for t in out.texts}
    # output (row, col) = input channel (row % 2) * 2 + (col % 2) at position (row // 2, col // 2)
    assert labels[(0, 0)] == "A1" and labels[(1, 0)] == "B1"  # keys are (x, y)
    assert labels[(0, 1)] == "C1" and labels[(1, 1)] == "D1"
    assert labels[(5, 5)] == "D9"


def test_colour_bars_and_perception_plot():
    shifts = {"Bicubic": {"R": 0.0, "G": 0.1, "B": -0.1}, "SRGAN": {"R": 5.0, "G": -2, "B": 1}}
    fig = plotting.colour_shift_bars(shifts, title="t")
    assert len(fig.axes[0].patches) == 6
    rows = [{"method": "Bicubic", "psnr_y": 28.4, "detail_ratio": 0.1},
            {"method": "SRGAN", "psnr_y": 26.0, "detail_ratio": 0.9}]
    fig = plotting.perception_distortion_plot(rows)
    assert "stand-in" in fig.axes[0].get_ylabel()
    rows = [dict(r, lpips=0.3) for r in rows]
    fig = plotting.perception_distortion_plot(rows)
    assert "LPIPS" in fig.axes[0].get_ylabel()

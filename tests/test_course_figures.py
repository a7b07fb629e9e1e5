"""The notebooks' figures (notebooks/course/figures.py): each draws the numbers it gets."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from course import figures


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _img(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def logdir(tmp_path):
    records = [{"kind": "note", "iteration": 0, "text": "random VGG"},
               {"kind": "val", "iteration": 0, "psnr_y": 27.5, "ssim_y": 0.7}]
    for i in range(1, 5):
        records.append({"kind": "train", "iteration": 10 * i, "loss": 1.0 / i, "l1": 0.1 / i,
                        "perceptual": 0.5 / i, "adversarial": 0.7, "d_loss": 1.2,
                        "d_real": 0.6, "d_fake": 0.4, "it_per_s": 3.0, "lr": 1e-4})
        records.append({"kind": "val", "iteration": 10 * i, "psnr_y": 28 + i, "ssim_y": 0.8})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    return tmp_path


def test_load_metrics_groups_by_kind(logdir):
    m = figures.load_metrics(logdir)
    assert [len(m[k]) for k in ("train", "val", "note")] == [4, 5, 1]
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        figures.load_metrics(logdir / "nothing")


def test_training_curves_start_at_iteration_0(logdir):
    m = figures.load_metrics(logdir)
    fig = figures.plot_training_curves(m, bicubic_psnr=28.42, title="MSRResNet, 32 channels")
    ax_loss, ax_val = fig.axes
    assert list(ax_loss.get_lines()[0].get_xdata()) == [10, 20, 30, 40]
    model, bicubic = ax_val.get_lines()
    assert list(model.get_xdata()) == [0, 10, 20, 30, 40]
    assert list(model.get_ydata()) == [27.5, 29, 30, 31, 32]
    assert bicubic.get_ydata()[0] == pytest.approx(28.42)
    assert ax_loss.get_xlim()[0] == ax_val.get_xlim()[0] == 0
    assert fig.texts[0].get_text() == "MSRResNet, 32 channels"


def test_gan_curves_plot_each_term_times_its_weight(logdir):
    m = figures.load_metrics(logdir)
    weights = {"l1": 1.0, "perceptual": 0.5, "adversarial": 5e-3, "mse": 0.0}
    fig = figures.plot_gan_curves(m, weights, bicubic_psnr=28.42)
    ax_d, ax_terms, ax_val = fig.axes
    assert [line.get_label() for line in ax_d.get_lines()[:2]] == ["D(real HR)", "D(SR)"]
    assert list(ax_d.get_lines()[0].get_ydata()) == [0.6] * 4
    lines = {line.get_label(): line for line in ax_terms.get_lines()}
    # a zero weight adds nothing to G's loss (and has no place on a log axis): left out
    assert list(lines) == ["1 x l1", "0.5 x perceptual", "0.005 x adversarial",
                           "G's loss (their sum)"]
    assert list(lines["1 x l1"].get_xdata()) == [10, 20, 30, 40]
    assert np.allclose(lines["1 x l1"].get_ydata(), [0.1 / i for i in range(1, 5)])
    assert np.allclose(lines["0.5 x perceptual"].get_ydata(), [0.25 / i for i in range(1, 5)])
    assert np.allclose(lines["0.005 x adversarial"].get_ydata(), [0.0035] * 4)
    assert np.allclose(lines["G's loss (their sum)"].get_ydata(), [1.0 / i for i in range(1, 5)])
    assert ax_terms.get_yscale() == "log" and "weight" in ax_terms.get_ylabel()
    assert ax_val.get_lines()[0].get_xdata()[0] == 0


def test_detail_box_finds_the_textured_square():
    img = np.full((100, 120), 128, np.uint8)
    img[60:80, 20:40] = _img(20, 20)[..., 0]
    top, left, h, w = figures.detail_box(img, size=20, stride=4)
    assert (h, w) == (20, 20)
    assert abs(top - 60) <= 4 and abs(left - 20) <= 4


@pytest.fixture
def bench_set():
    hr = {"a": _img(128, 128, 3), "b": _img(96, 128, 4)}
    rows = [{"name": "a", "psnr_y": 30.0, "ssim_y": 0.9}, {"name": "b", "psnr_y": 25.0, "ssim_y": 0.7}]
    return {"HR": {"images": hr}, "Bicubic": {"images": hr, "rows": rows},
            "SR": {"images": hr, "rows": rows}}


def test_save_writes_a_png_and_nothing_else(tmp_path, bench_set):
    fig = figures.crop_grid({m: bench_set[m]["images"] for m in ("SR", "HR")},
                            [("a", (0, 0, 16, 16), "a corner")])
    path = figures.save(fig, tmp_path / "out" / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_image_row_crops_and_patch_grid():
    fig = figures.image_row({"a": _img(), "b": _img(seed=1)}, box=(2, 3, 8, 10))
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    shown = fig.axes[1].get_images()[0].get_array()
    assert np.array_equal(shown, _img(seed=1)[2:10, 3:13])
    pairs = [(_img(8, 8, s), _img(32, 32, s)) for s in range(3)]
    fig = figures.patch_grid(pairs)
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "LR 8x8" and fig.axes[3].get_title() == "HR 32x32"


def test_image_row_draws_difference_maps_on_their_own_scale_with_a_colour_bar():
    lr = _img(64, 64)
    difference = np.abs(lr.astype(int) - _img(64, 64, seed=1)).max(axis=2) // 20  # 0..12
    fig = figures.image_row({"image": lr, "difference": difference}, panel=3.5)
    ax_img, ax_diff, colour_bar = fig.axes
    assert [ax.get_title() for ax in (ax_img, ax_diff)] == ["image", "difference"]
    assert ax_img.get_images()[0].get_clim() == (0, 255)
    shown = ax_diff.get_images()[0]
    assert shown.get_clim() == (0, difference.max()) and shown.get_cmap().name == "gray"
    assert colour_bar.get_ylabel() == "grey levels"
    fig.canvas.draw()
    for ax in (ax_img, ax_diff):  # every LR pixel is a visible block, even beside the bar
        assert ax.get_window_extent().width / 64 >= figures.ZOOM
    flat = figures.image_row({"no difference": np.zeros((8, 8), int)})
    assert flat.axes[0].get_images()[0].get_clim() == (0, 1)


def test_crop_grid_draws_each_crop_pixel_by_pixel_without_covering_it(bench_set):
    """No inset: each crop is its own panel, so nothing hides the region it enlarges."""
    crops = [("a", (8, 8, 24, 24), "texture"), ("b", (0, 16, 24, 24), "edge")]
    fig = figures.crop_grid({m: bench_set[m]["images"] for m in ("Bicubic", "SR", "HR")}, crops)
    assert len(fig.axes) == 6 and not any(ax.child_axes for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["Bicubic", "SR", "HR"]
    shown = fig.axes[4].get_images()[0]
    assert np.array_equal(shown.get_array(), bench_set["SR"]["images"]["b"][0:24, 16:40])
    assert shown.get_interpolation() == "nearest" and fig.axes[3].get_ylabel() == "b\nedge"

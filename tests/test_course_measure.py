"""The notebooks' shared measurements (notebooks/course/measure.py): runs, scores, tables."""
import json
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config
from course import measure

from srlib import checkpoint, config
from srlib.data.datasets import BenchmarkDataset
from srlib.data.imresize import imresize
from srlib.data.io import save_image
from srlib.evaluate import bicubic_baseline, score_model
from srlib.metrics import score_pair, summarize
from srlib.models import MSRResNet


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


def write_config(project, name, **changes):
    """A config file under ``project/configs`` (so its relative paths start at ``project``)."""
    path = project / "configs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tiny_config(project, **changes)))
    return path


def write_checkpoint(path, model):
    """An srlib checkpoint holding just what ``load_generator`` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save({"format": checkpoint.FORMAT, "networks": {"g": {"weights": model.state_dict()}},
                     "config": {"model": "msrresnet", "scale": 4,
                                "model_params": {"num_feat": 4, "num_block": 1}}}, path)


# --------------------------------------------------------------------------- tables and data

def test_save_csv_writes_every_column_and_leaves_no_temporary_file(tmp_path):
    rows = [{"method": "a", "psnr_y": 28.41666, "ssim_y": 0.81},
            {"method": "bb", "psnr_y": None}]
    path = measure.save_csv(rows, tmp_path / "out" / "t.csv", ["method", "psnr_y", "ssim_y"])
    assert path.read_text().splitlines() == ["method,psnr_y,ssim_y", "a,28.4167,0.8100", "bb,,"]
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]


def test_training_data_counts_sizes_and_too_small_images(tmp_path, folder):
    cfg = config.load(write_config(tmp_path, "t", patch_size=48,
                                   dataset={"root": str(folder), "name": "folder"}))
    s = measure.training_data(cfg)  # LR sides 16x12 and 12x16: one LR patch of 12 fits
    assert s["images"] == 2 and s["smaller_than_patch"] == 0 and s["patch_size"] == 48
    assert s["height (min, median, max)"] == (50, 57, 64)
    assert s["width (min, median, max)"] == (48, 57, 66)
    assert s["megapixels"] == round((64 * 48 + 50 * 66) / 1e6, 2)
    cfg.patch_size = 52  # LR patch 13: neither image has room for it
    assert measure.training_data(cfg)["smaller_than_patch"] == 2
    cfg.dataset.name, cfg.dataset.root = "div2k", str(tmp_path / "div2k")
    out = measure.training_data(cfg, prepare=False)
    assert out["images"] == 0 and "srlib prepare div2k" in out["note"]


# --------------------------------------------------------------------------- runs

def test_load_runs_picks_best_or_last_and_explains_the_missing(tmp_path):
    torch.manual_seed(0)
    std, gan_model = MSRResNet(num_feat=4, num_block=1), MSRResNet(num_feat=4, num_block=1)
    write_checkpoint(tmp_path / "runs/a/best.pt", std)
    write_checkpoint(tmp_path / "runs/a/last.pt", gan_model)  # a PSNR run is shown by best.pt
    write_checkpoint(tmp_path / "runs/g/best.pt", std)
    write_checkpoint(tmp_path / "runs/g/last.pt", gan_model)  # a GAN by last.pt
    gan = {"solver": "gan", "loss_fn": [{"name": "l1"}, {"name": "adversarial", "weight": 1e-3}],
           "generator_path": "runs/a/best.pt"}
    write_checkpoint(tmp_path / "runs/n/last.pt", gan_model)
    configs = {"A": write_config(tmp_path, "a", logdir="runs/a"),
               "G": write_config(tmp_path, "g", logdir="runs/g", **gan),
               "M": write_config(tmp_path, "m", logdir="runs/m"),
               # the weights a GAN started from may be gone: its own run still counts
               "gone": write_config(tmp_path, "n", logdir="runs/n",
                                    **dict(gan, generator_path="runs/nothing.pt")),
               "broken": tmp_path / "configs" / "missing.json",
               "skipped": None}
    models, notes = measure.load_runs(configs, device="cpu", run_dir=tmp_path / "runs")
    assert list(models) == ["A", "G", "gone"]
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(models["A"](x), std(x))
        assert torch.equal(models["G"](x), gan_model(x))
        assert torch.equal(models["gone"](x), gan_model(x))
    assert len(notes) == 2
    assert notes[0].startswith("M: no run at") and "runs/m/best.pt" in notes[0]
    assert notes[1].startswith("broken: left out") and "missing.json" in notes[1]


def test_the_run_folder_is_found_by_one_rule(tmp_path, monkeypatch):
    """run_dir, else $SRLIB_RUN_DIR, else runs/latest (the last make demo), else runs/notebooks;
    a config's run is <run folder>/<its logdir's name>, and so is a GAN's start."""
    monkeypatch.setattr(measure, "ROOT", tmp_path)
    monkeypatch.delenv("SRLIB_RUN_DIR", raising=False)
    assert measure.run_folder() == tmp_path / "runs/notebooks"  # a fresh checkout
    (tmp_path / "runs/20261202-120000").mkdir(parents=True)
    (tmp_path / "runs/latest").symlink_to("20261202-120000")
    assert measure.run_folder() == tmp_path / "runs/20261202-120000"  # after make demo
    monkeypatch.setenv("SRLIB_RUN_DIR", str(tmp_path / "env"))
    assert measure.run_folder() == tmp_path / "env"  # make test's
    assert measure.run_folder(tmp_path / "given") == tmp_path / "given"  # papermill's
    torch.manual_seed(0)
    write_checkpoint(tmp_path / "given/a/best.pt", MSRResNet(num_feat=4, num_block=1))
    configs = {"A": write_config(tmp_path, "a", logdir="runs/quick/a"),
               "B": write_config(tmp_path, "b", logdir="runs/quick/b")}
    models, notes = measure.load_runs(configs, device="cpu", run_dir=tmp_path / "given")
    assert list(models) == ["A"] and len(notes) == 1 and "given/b/best.pt" in notes[0]
    gan = write_config(tmp_path, "g", logdir="runs/quick/g", solver="gan",
                       loss_fn=[{"name": "l1"}, {"name": "adversarial"}],
                       generator_path="runs/quick/a/best.pt")
    cfg = measure.load_config(gan, tmp_path / "given")
    assert cfg.logdir == str(tmp_path / "given/g")
    assert cfg.generator_path == str(tmp_path / "given/a/best.pt")


def test_train_or_reuse_never_replaces_a_finished_run(tmp_path, capsys):
    cfg = config.from_dict(tiny_config(tmp_path, iterations=2, validation=None))
    first = measure.train_or_reuse(cfg)
    files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.name != "srlib.lock"}
    again = measure.train_or_reuse(cfg)
    assert "reusing the finished run" in capsys.readouterr().out
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()
                     if p.name != "srlib.lock"}
    assert again["iterations"] == first["iterations"] == 2
    assert again["best_val_psnr_y"] == first["best_val_psnr_y"]


# --------------------------------------------------------------------------- benchmark

@pytest.fixture
def bench(folder):
    torch.manual_seed(0)
    model = MSRResNet(num_feat=4, num_block=1)
    return measure.benchmark({"tiny": model}, {"Set5": folder}), model


def test_benchmark_scores_match_its_images_and_the_protocol(bench, folder):
    bench, model = bench
    s = bench["Set5"]
    assert list(s) == ["HR", "Bicubic", "tiny"]
    assert s["Bicubic"]["rows"] == bicubic_baseline(folder, 4)
    assert s["tiny"]["rows"] == score_model(model, BenchmarkDataset(folder, 4))
    assert s["tiny"]["mean"] == summarize(s["tiny"]["rows"])
    hr = s["HR"]["images"]
    assert hr["b"].shape == s["tiny"]["images"]["b"].shape == (48, 64, 3)  # modcropped
    for method in ("Bicubic", "tiny"):  # the images shown are the images scored
        row = s[method]["rows"][1]
        assert score_pair(s[method]["images"]["b"], hr["b"], border=4) == \
            {k: row[k] for k in row if k != "name"}


def test_results_table_puts_this_repo_before_the_published_rows(bench):
    rows = measure.results_table(bench[0], "Set5", source="test")
    assert [(r["method"], r["source"]) for r in rows[:2]] == [("Bicubic", "test"), ("tiny", "test")]
    assert rows[0]["psnr_y"] == bench[0]["Set5"]["Bicubic"]["mean"]["psnr_y"]
    published = {(r["method"], r["source"].split(",")[0]): r for r in rows[2:]}
    assert len(published) == len(rows) - 2 == 6  # one row per method and source
    assert {m for m, _ in published} == {"Bicubic", "SRResNet-MSE", "SRGAN-VGG54", "MSRResNet",
                                         "MSRGAN"}
    ledig = "SRGAN paper (Ledig et al. 2017)"
    assert published["Bicubic", ledig]["psnr_y"] == 28.43
    assert published["Bicubic", ledig]["ssim_y"] == 0.8211
    assert published["SRResNet-MSE", ledig]["psnr_y"] == 32.05
    msrresnet = published["MSRResNet", "BasicSR docs/ModelZoo.md: 001_MSRResNet_x4_f64b16_DIV2K_"
                          "1000k_B16G1_wandb (RGB)"]
    assert msrresnet["psnr_y"] is None and msrresnet["ssim_y"] is None  # BasicSR: RGB only
    assert (msrresnet["psnr_rgb"], msrresnet["ssim_rgb"]) == (30.2468, 0.8651)
    assert all(set(r) == set(measure.TABLE_COLUMNS) for r in rows)


def test_published_rows_are_complete_and_plausible():
    seen = set()
    for row in measure.PUBLISHED:
        key = (row["method"], row["dataset"], row["source"])
        assert key not in seen and row["dataset"] in ("Set5", "Set14") and row["source"]
        seen.add(key)
        channel = "y" if "psnr_y" in row else "rgb"
        assert 24 < row[f"psnr_{channel}"] < 33 and 0.6 < row[f"ssim_{channel}"] < 0.95
    for method, source in {(m, s) for m, _, s in seen}:  # every source gives both test sets
        assert {d for m, d, s in seen if (m, s) == (method, source)} == {"Set5", "Set14"}


# --------------------------------------------------------------------------- perception

def test_high_frequency_ratio():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert measure.high_frequency_ratio(hr, hr) == pytest.approx(1.0)
    blurred = imresize(imresize(hr, 0.5), 2.0)
    assert measure.high_frequency_ratio(blurred, hr) < 0.5
    flat = np.full((40, 40), 128, np.uint8)
    assert measure.high_frequency_ratio(flat, hr[..., 0]) == 0.0


def test_load_lpips_explains_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    fn, reason = measure.load_lpips()
    assert fn is None and "pip install -e '.[lpips]'" in reason

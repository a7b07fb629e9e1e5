"""Inference: tiled upscaling equals untiled; checkpoints rebuild their model; the CLI."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_config, write_config

from srlib import config as config_mod
from srlib.cli import main
from srlib.data.io import load_image, save_image, to_float_tensor, to_uint8
from srlib.inference import load_generator, upscale, upscale_image
from srlib.models import MSRResNet
from srlib.train import make_run, train


@pytest.mark.parametrize("tile,overlap", [(48, 20), (64, 24)])
def test_tiled_equals_untiled_for_msrresnet(tile, overlap):
    torch.manual_seed(0)
    model = MSRResNet(num_feat=16, num_block=4).eval()  # receptive radius ~11 LR pixels
    with torch.no_grad():  # make the body matter, not just the bilinear base
        for p in model.parameters():
            p.mul_(5)
    image = (np.random.default_rng(0).random((100, 130, 3)) * 255).astype(np.uint8)
    whole = upscale_image(model, image, tile=None)
    tiled = upscale_image(model, image, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape == (400, 520, 3) and tiled.dtype == np.uint8
    assert np.abs(tiled.astype(int) - whole).max() <= 1  # float noise may flip a rounding
    assert torch.equal(torch.from_numpy(whole), torch.from_numpy(
        to_uint8(upscale(model, to_float_tensor(image)))))  # untiled is the float path, rounded
    # and too small an overlap does show seams: the test can fail
    seams = upscale_image(model, image, tile=tile, overlap=2)
    assert np.abs(seams.astype(int) - whole).max() > 3


def test_upscale_rejects_overlap_that_leaves_no_tile():
    with pytest.raises(ValueError, match="overlap"):
        upscale_image(MSRResNet(num_feat=8, num_block=1), np.zeros((64, 64, 3), np.uint8),
                      tile=32, overlap=16)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# fp16 autocast is a GPU feature; bf16 runs on both
@pytest.mark.parametrize("device,precision", [("cpu", "bf16")] + [
    ("cuda", p) for p in ("bf16", "fp16") if "cuda" in DEVICES])
def test_half_precision_upscale_stays_close_to_fp32(device, precision):
    torch.manual_seed(0)
    model = MSRResNet(num_feat=16, num_block=2).to(device).eval()
    lr = torch.rand(1, 3, 40, 52)
    full = upscale(model, lr)
    half = upscale(model, lr, precision=precision)
    assert half.dtype == torch.float32 and half.device.type == "cpu"
    assert next(model.parameters()).dtype == torch.float32  # the model is not converted
    err = (half - full).abs()
    assert 0 < err.max() < 0.03 and err.mean() < 3e-3  # really ran in half, and close


def test_precision_auto_is_fp32_on_cpu_and_unknown_names_are_refused():
    model = MSRResNet(num_feat=8, num_block=1).eval()
    lr = torch.rand(1, 3, 16, 16)
    assert torch.equal(upscale(model, lr, precision="auto"), upscale(model, lr))
    with pytest.raises(ValueError, match="precision 'fp8'"):
        upscale(model, lr, precision="fp8")


def test_checkpoint_rebuilds_model_and_prefers_ema(tmp_path):
    cfg = config_mod.from_dict(tiny_config(tmp_path, iterations=6, validation=None,
                                           ema_decay=0.9))
    train(cfg, progress=False)
    state = torch.load(tmp_path / "run/last.pt", weights_only=True)
    model = load_generator(tmp_path / "run/last.pt")
    assert model.scale == 4 and not model.training
    ema, weights = state["ema"], state["networks"]["g"]["weights"]
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(ema[k], weights[k]) for k in ema)  # EMA really differs
    raw = load_generator(tmp_path / "run/last.pt", prefer_ema=False)
    assert all(torch.equal(v, weights[k]) for k, v in raw.state_dict().items())


def test_upscale_image_keeps_gray_gray():
    model = MSRResNet(num_feat=8, num_block=1).eval()
    gray = load_image(ROOT / "data/Set14/bridge.png")[:40, :30]
    out = upscale_image(model, gray, tile=16, overlap=4)
    assert out.shape == (160, 120) and out.dtype == np.uint8


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "srlib", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_train_eval_upscale(tmp_path):
    config = write_config(tmp_path, iterations=4, save_every=2)
    done = _cli("train", "--config", config, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "best set5 Y-PSNR" in done.stdout
    assert "bicubic set5 Y-PSNR: 30.97 dB" in done.stdout  # on the same 2 images
    ckpt = tmp_path / "run/best.pt"
    evaluated = _cli("eval", "--checkpoint", ckpt, "--data", ROOT / "data/Set5")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "butterfly" in evaluated.stdout and "mean" in evaluated.stdout
    src = tmp_path / "small.png"
    save_image(src, load_image(ROOT / "data/Set5/bird.png")[:50, :60])
    out = tmp_path / "small_x4.png"
    up = _cli("upscale", "--checkpoint", ckpt, src, out, "--tile", "32", "--overlap", "8")
    assert up.returncode == 0, up.stderr
    assert load_image(out).shape == (200, 240, 3)
    half = tmp_path / "small_x4_bf16.png"
    up = _cli("upscale", "--checkpoint", ckpt, src, half, "--precision", "bf16")
    assert up.returncode == 0, up.stderr
    diff = np.abs(load_image(half).astype(int) - load_image(out).astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8  # bf16 keeps ~3 significant digits


def test_cli_errors_are_one_line(tmp_path):
    config = write_config(tmp_path, optimizer={"name": "sgd", "params": {}})
    done = _cli("train", "--config", config)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f'error: {config}: key "optimizer.name": unknown value "sgd"; valid: adam, adamw']
    missing = _cli("eval", "--bicubic", "--data", tmp_path / "nothing")
    assert missing.returncode == 2 and "nothing" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_resume = _cli("train", "--config", write_config(tmp_path), "--resume", tmp_path / "no.pt")
    assert bad_resume.returncode == 2 and 'key "checkpoint": file not found' in bad_resume.stderr


def test_cli_bicubic_table():
    done = _cli("eval", "--bicubic", "--data", ROOT / "data/Set5")
    assert done.returncode == 0
    mean = [line for line in done.stdout.splitlines() if line.startswith("mean")][0]
    assert mean.split()[1] == "28.42"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration MSRResNet checkpoint, and a folder with an image."""
    tmp = tmp_path_factory.mktemp("trained")
    train(config_mod.from_dict(tiny_config(tmp, iterations=2, validation=None)), progress=False)
    images = tmp / "images"
    save_image(images / "a.png", load_image(ROOT / "data/Set5/bird.png")[:24, :24])
    return tmp / "run/last.pt", images


def _cases(tmp, ckpt, images):
    """(argv, what the one line must say): each a mistake a person makes."""
    junk = tmp / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    cut = tmp / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    other = tmp / "other.pt"  # a checkpoint whose config disagrees with its weights
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model_params"]["num_feat"] = 16
    torch.save(state, other)
    wide = tmp / "wide.pt"  # bare weights of another model
    torch.save(MSRResNet(num_feat=16, num_block=1).state_dict(), wide)
    img = images / "a.png"
    return [
        (["eval", "--checkpoint", junk, "--data", images], "cannot load checkpoint"),
        (["upscale", "--checkpoint", cut, img, tmp / "o.png"], "cannot load checkpoint"),
        (["upscale", "--checkpoint", other, img, tmp / "o.png"], "do not fit MSRResNet"),
        (["upscale", "--checkpoint", ckpt, img, img], "would overwrite an input"),
        (["upscale", "--checkpoint", ckpt, img, tmp / "o.webpx"], "unknown image type"),
        (["upscale", "--checkpoint", ckpt, img, tmp / "o.png", "--tile", "0"], ">= 1"),
        (["upscale", "--checkpoint", ckpt, img, tmp / "o.png", "--overlap", "-1"], ">= 0"),
        (["upscale", "--checkpoint", ckpt, img, tmp / "o.png", "--tile", "32"], "half of --tile"),
        (["eval", "--bicubic", "--scale", "0", "--data", images], ">= 2"),
        (["train", "--config", write_config(tmp), "--set", f"generator_path={wide}"],
         "do not fit MSRResNet"),
        (["train", "--config", write_config(tmp), "--resume", junk], "cannot load checkpoint"),
    ]


def test_cli_mistakes_end_in_one_line_with_exit_code_2(trained, tmp_path, capsys):
    ckpt, images = trained
    for argv, expected in _cases(tmp_path, ckpt, images):
        with pytest.raises(SystemExit) as done:
            sys.exit(main([str(a) for a in argv]))
        err = capsys.readouterr().err.strip().splitlines()
        assert done.value.code == 2, (argv, err)
        assert expected in err[-1] and err[-1].startswith(("error:", "srlib")), (argv, err)
        assert not any("Traceback" in line for line in err), (argv, err)


def test_upscale_folder_gives_each_image_its_own_output(trained, tmp_path):
    ckpt, images = trained
    folder = tmp_path / "in"
    for name in ("a.png", "a.jpg", "b.png"):
        save_image(folder / name, load_image(images / "a.png"))
    assert main(["upscale", "--checkpoint", str(ckpt), str(folder), str(folder)]) == 0
    outputs = sorted(p.name for p in folder.glob("*_x4.png"))
    assert outputs == ["a_jpg_x4.png", "a_png_x4.png", "b_x4.png"]
    assert {p.name for p in folder.iterdir()} >= {"a.png", "a.jpg", "b.png"}  # kept


def test_export_and_foreign_weights_load_everywhere(trained, tmp_path):
    """srlib export writes safetensors; eval/upscale/generator_path take srlib checkpoints,
    exported safetensors and BasicSR MSRResNet files alike, and they give the same model."""
    ckpt, images = trained
    out = tmp_path / "g.safetensors"
    assert main(["export", str(ckpt), str(out)]) == 0
    weights = torch.load(ckpt, weights_only=True)["networks"]["g"]["weights"]
    basicsr = tmp_path / "net_g_1000.pth"  # BasicSR saves {"params": ...} with the same names
    torch.save({"params": weights}, basicsr)
    lr = torch.rand(1, 3, 12, 12)
    expected = upscale(load_generator(ckpt), lr)
    for source in (out, basicsr):
        assert torch.equal(upscale(load_generator(source), lr), expected), source
        assert main(["upscale", "--checkpoint", str(source), str(images / "a.png"),
                     str(tmp_path / f"{source.stem}.png")]) == 0
        (tmp_path / source.stem).mkdir()
        cfg = config_mod.from_dict(tiny_config(tmp_path / source.stem, iterations=1,
                                               validation=None, generator_path=str(source)))
        start = make_run(cfg, progress=False).g.module.state_dict()
        assert all(torch.equal(start[k], v) for k, v in weights.items())

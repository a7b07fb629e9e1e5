"""The command line as a newcomer and a script meet it: answers at once, says its defaults,
prints results for people and for programs, and exports a model others can load."""
import contextlib
import csv
import io
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_config
from safetensors import safe_open

from srlib import config as config_mod
from srlib.cli import main
from srlib.data.io import load_image, save_image
from srlib.models import MSRResNet
from srlib.train import train


def _main(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_version_and_help_import_nothing_heavy():
    """--version and --help answer before torch is imported (3 s here; torchvision 7 s)."""
    probe = ("import sys; from srlib.cli import main\n"
             "for argv in (['--version'], ['upscale', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "srlib 0.1.0"
    assert "(default: 192)" in done.stdout and "(default: auto)" in done.stdout  # tile, precision
    assert done.stdout.splitlines()[-1] == "[]"


def test_eval_formats_for_scripts():
    code, text, _ = _main("eval", "--bicubic", "--data", ROOT / "data/Set5", "--format", "json")
    assert code == 0
    data = json.loads(text)
    mean = data["Set5"]["bicubic x4"]["mean"]
    assert mean["psnr_y"] == 28.4177  # 4 decimals, as the README quotes it
    assert len(data["Set5"]["bicubic x4"]["rows"]) == 5
    code, text, _ = _main("eval", "--bicubic", "--data", ROOT / "data/Set5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["image"] for r in rows][-1] == "mean" and rows[-1]["psnr_y"] == "28.4177"
    assert {r["set"] for r in rows} == {"Set5"} and len(rows) == 6


def test_eval_output_file(tmp_path):
    out = tmp_path / "scores.csv"
    code, text, _ = _main("eval", "--bicubic", "--data", ROOT / "data/Set5", "--format", "csv",
                          "--output", out)
    assert code == 0 and text == "" and out.read_text().startswith("set,method,image,psnr_y")


@pytest.fixture(scope="module")
def x2_run(tmp_path_factory):
    """A 2-iteration x2 MSRResNet run with EMA."""
    tmp = tmp_path_factory.mktemp("x2")
    cfg = tiny_config(tmp, iterations=2, scale=2, patch_size=32, ema_decay=0.9,
                      validation={"root": str(ROOT / "data/Set5"), "name": "set5", "every": 2,
                                  "max_images": 1})
    train(config_mod.from_dict(cfg), progress=False)
    return tmp / "run"


def test_outputs_are_named_by_the_model_scale(x2_run, tmp_path):
    folder = tmp_path / "in"
    save_image(folder / "a.png", load_image(ROOT / "data/Set5/bird.png")[:20, :20])
    assert _main("upscale", "--checkpoint", x2_run / "last.pt", folder, tmp_path / "out")[0] == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_x2.png"]
    assert load_image(tmp_path / "out/a_x2.png").shape == (40, 40, 3)


def test_export_writes_what_a_plain_model_needs_and_a_model_card(x2_run, tmp_path):
    code, _, _ = _main("eval", "--checkpoint", x2_run / "best.pt", "--data", ROOT / "data/Set5")
    assert code == 0 and "best.pt" in json.loads((x2_run / "scores.json").read_text())
    out = tmp_path / "msrresnet_x2.safetensors"
    assert _main("export", x2_run / "best.pt", out)[0] == 0
    with safe_open(str(out), "pt") as f:  # no srlib loader: the metadata alone rebuilds it
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}
    model = json.loads(meta["srlib_model"])
    assert meta["format"] == "pt" and meta["ema"] == "true" and meta["scale"] == "2"
    assert meta["srlib_version"] == "0.1.0" and "[0, 1]" in meta["input"]
    plain = MSRResNet(scale=model["scale"], **model["model_params"])
    plain.load_state_dict(weights)  # strict: every key and shape
    state = torch.load(x2_run / "best.pt", weights_only=True)
    assert all(torch.equal(v, state["ema"][k]) for k, v in plain.state_dict().items())
    card = out.with_suffix(".md").read_text()
    assert card.startswith("---\nlibrary_name: srlib\n") and "T91" in card
    assert "2 iterations" in card and "| Set5 |" in card
    assert f"{state['best_psnr']:.2f} dB" in card

"""The recipe card (docs/recipes.md) and the full configs cannot drift apart: every training
value of every full config is in the card, and every value in the card is the config's."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_config

from srlib.models import SRGANDiscriminator, VGGStyleDiscriminator

CARD = (ROOT / "docs/recipes.md").read_text()
FULL = sorted(p.name for p in (ROOT / "configs").glob("*.json"))
# Keys that set speed, storage or logging, not the recipe (the card says so in one sentence).
LOGISTICS = ("logdir", "validation", "save_every", "log_every", "precision", "channels_last",
             "compile", "seed", "dataset.root", "dataset.params.num_workers",
             "dataset.params.pin_memory", "dataset.params.shuffle")


def card_rows(name: str) -> dict:
    """``{key: value}`` of the table under the heading that names ``configs/<name>``."""
    section = CARD.split(f"## `configs/{name}`")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section, flags=re.M)
    return {key: json.loads(value) for key, value in rows}


def leaves(node, prefix=""):
    """Dotted paths (``loss_fn[1].params.layer``) of every value that is not a dict or a list
    of dicts, with the value."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            yield from leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


@pytest.mark.parametrize("name", FULL)
def test_card_holds_every_training_value_of_the_config(name):
    config = dict(leaves(json.loads((ROOT / "configs" / name).read_text())))
    rows = card_rows(name)
    training = {k: v for k, v in config.items() if not k.startswith(LOGISTICS)}
    assert sorted(set(training) - set(rows)) == [], "values missing from docs/recipes.md"
    assert {k: config.get(k) for k in rows} == rows, "docs/recipes.md disagrees with the config"


def test_discriminator_parameter_counts():
    """The paper's D at BasicSR's 128-px patches is 2.6x BasicSR's VGG-style one."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SRGANDiscriminator(input_size=96)) == 23_563_649
    assert count(SRGANDiscriminator(input_size=128)) == 38_243_713
    assert count(VGGStyleDiscriminator(input_size=128)) == 14_499_401


def test_vgg_style_discriminator_has_basicsr_module_names():
    names = set(VGGStyleDiscriminator(num_feat=8).state_dict())
    expected = {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.running_var",
                "conv4_0.weight", "bn4_1.weight", "linear1.weight", "linear2.bias"}
    assert expected <= names and not any(n.startswith("conv5") for n in names)
    assert not any(n.startswith("conv1_0.bias") for n in names)  # no bias before batch norm
    d = VGGStyleDiscriminator(num_feat=8, input_size=64)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    with pytest.raises(ValueError, match="input_size"):
        VGGStyleDiscriminator(input_size=96)


def _toy(config: str, logdir, images, *extra) -> subprocess.CompletedProcess:
    """``srlib train`` on a full config, overridden only in size, length and where things are
    (a tiny model and data, 2 iterations, CPU, random VGG weights: this machine is offline)."""
    sets = [f"logdir={logdir}", "iterations=2", "save_every=2", "log_every=1",
            "model_params.num_feat=8", "model_params.num_block=1", "patch_size=64",
            "dataset.name=t91", f"dataset.root={images}", "dataset.params.batch_size=2",
            "dataset.params.num_workers=0", "dataset.params.pin_memory=false",
            "validation.max_images=1", "validation.every=2", "device=cpu",
            "allow_random_vgg=true", *extra]
    cmd = [sys.executable, "-m", "srlib", "train", "--config", str(ROOT / "configs" / config),
           "--no-progress", *(a for s in sets for a in ("--set", s))]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.parametrize("psnr,gan", [("srresnet_x4.json", "srgan_paper_x4.json"),
                                      ("msrresnet_x4.json", "srgan_x4.json")])
def test_gan_configs_run_at_toy_size_from_their_psnr_run(tmp_path, psnr, gan):
    images = tiny_config(tmp_path)["dataset"]["root"]
    first = _toy(psnr, tmp_path / "psnr", images)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "GPU settings: this run uses eager fp32" in first.stdout  # said, not an error
    done = _toy(gan, tmp_path / "gan", images, f"generator_path={tmp_path / 'psnr/last.pt'}",
                "discriminator.params.num_feat=8")
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(tmp_path / "gan/last.pt", weights_only=True)
    assert state["iteration"] == 2 and list(state["networks"]) == ["g", "d"]
    assert (state["ema"] is not None) == (gan == "srgan_x4.json")

"""The recipe card (docs/recipes.md) and the full configs cannot drift apart: every training
value of every full config is in the card, and every value in the card is the config's."""
import json
import re

import pytest
import torch
from conftest import ROOT

from srlib.models import Discriminator
from srlib.models.vgg_discriminator import VGGStyleDiscriminator

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
    assert count(Discriminator(input_size=96)) == 23_563_649
    assert count(Discriminator(input_size=128)) == 38_243_713
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

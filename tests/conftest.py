"""Shared fixtures: a tiny, fast training config on the shipped data."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))  # the chapters' shared helpers (notebooks/course)


def tiny_config(tmp_path: Path, **changes) -> dict:
    """A training config small enough for a test: 8-channel MSRResNet on 12 T91 images."""
    images = tmp_path / "t91"
    if not images.exists():
        images.mkdir()
        for src in sorted((ROOT / "data/T91").glob("*.png"))[:12]:
            (images / src.name).write_bytes(src.read_bytes())
    cfg = {
        "logdir": str(tmp_path / "run"),
        "model": "msrresnet",
        "model_params": {"num_feat": 8, "num_block": 1},
        "iterations": 12,
        "loss_fn": "l1",
        "patch_size": 32,
        "dataset": {"root": str(images), "name": "t91", "params": {"batch_size": 4}},
        "optimizer": {"name": "adam", "params": {"lr": 1e-3}},
        "validation": {"root": str(ROOT / "data/Set5"), "name": "set5", "every": 6,
                       "max_images": 2},
        "save_every": 6,
        "log_every": 1,
        "device": "cpu",
    }
    cfg.update(changes)
    return cfg


def write_config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_config(tmp_path, **changes)))
    return path


@pytest.fixture
def root() -> Path:
    return ROOT

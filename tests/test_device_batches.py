"""The on-device data path cuts exactly the CPU loader's batches, and trains the same way."""
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from srlib import config as config_mod
from srlib.data.datasets import PairedPatchDataset
from srlib.data.device_batches import DeviceBatches
from srlib.data.sampler import IterationBatchSampler
from srlib.train import train

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def t91_subset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t91")
    for src in sorted((ROOT / "data/T91").glob("*.png"))[:10]:
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augment", [True, False])
def test_device_batches_equal_the_cpu_loader_batches(t91_subset, device, augment):
    cpu_set = PairedPatchDataset(t91_subset, patch_size=48, augment=augment)
    on_device = DeviceBatches(PairedPatchDataset(t91_subset, patch_size=48, augment=augment,
                                                 cache=False), device)
    assert len(on_device.hr_images) == len(on_device.lr_images) == len(cpu_set.paths)
    sampler = IterationBatchSampler(len(cpu_set), batch_size=8, seed=3, total=5)
    flipped = 0
    for batch_items in sampler:
        got = on_device.batch(batch_items)
        want = [cpu_set[item] for item in batch_items]
        for key in ("lr", "hr"):
            assert got[key].device.type == device and got[key].dtype == torch.float32
            expected = torch.stack([w[key] for w in want])
            assert torch.equal(got[key].cpu(), expected)
        flipped += sum(not torch.equal(w["hr"][:, :2, :2], w["hr"][:, :2, :2].flip(-1))
                       for w in want)
    assert flipped  # the batches were not trivially symmetric


def test_training_on_device_matches_the_dataloader_run(tmp_path):
    runs = {}
    for on_device in (False, True):
        base = tmp_path / f"on_device_{on_device}"
        base.mkdir()
        cfg = tiny_config(base, validation=None, iterations=6, save_every=3)
        cfg["dataset"]["on_device"] = on_device
        train(config_mod.from_dict(cfg), progress=False)
        runs[on_device] = base / "run"
    logs = {k: [json.loads(line)["loss"] for line in (v / "metrics.jsonl").read_text()
                .splitlines() if json.loads(line)["kind"] == "train"]
            for k, v in runs.items()}
    assert len(logs[True]) == 6 and logs[True] == logs[False]
    a = torch.load(runs[False] / "last.pt", weights_only=True)["networks"]["g"]["weights"]
    b = torch.load(runs[True] / "last.pt", weights_only=True)["networks"]["g"]["weights"]
    assert all(torch.equal(a[k], b[k]) for k in a)

"""Training on a CUDA GPU: each speed option trains and checkpoints (collected only with a GPU;
`benchmarks/gpu_check.sh` runs these with the GPU benchmark)."""
import json

import pytest
import torch

from srlib import config as config_mod
from srlib.train import train

from conftest import tiny_config

CUDA = torch.cuda.is_available()
OPTIONS = {  # name: config changes
    "fp32": {},
    "bf16_channels_last": {"precision": "bf16", "channels_last": True},
    "fp16_grad_scaler": {"precision": "fp16"},
    "on_device_data": {"precision": "bf16", "channels_last": True, "on_device": True},
    "compile": {"precision": "bf16", "compile": True},
    "compile_cuda_graphs": {"precision": "bf16", "channels_last": True, "on_device": True,
                            "compile": "reduce-overhead", "ema_decay": 0.9},
}


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


@pytest.mark.parametrize("option", list(OPTIONS) if CUDA else [])
def test_cuda_training_option_trains_and_checkpoints(tmp_path, option):
    changes = dict(OPTIONS[option])
    on_device = changes.pop("on_device", False)
    cfg = tiny_config(tmp_path, device="cuda", iterations=40, save_every=20, log_every=10,
                      model_params={"num_feat": 16, "num_block": 2},
                      optimizer={"name": "adam", "params": {"lr": 2e-3}}, **changes)
    cfg["dataset"]["on_device"] = on_device
    summary = train(config_mod.from_dict(cfg), progress=False)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 4 and all(l == l for l in losses)  # finite: NaN != NaN
    psnr = [json.loads(line)["psnr_y"] for line in (tmp_path / "run/metrics.jsonl")
            .read_text().splitlines() if json.loads(line)["kind"] == "val"]
    assert psnr[-1] > psnr[0]  # it learns (window losses see different patches; PSNR does not)
    state = torch.load(tmp_path / "run/last.pt", weights_only=True)
    assert state["iteration"] == 40
    assert summary["best_val_psnr_y"] > 20


@pytest.mark.parametrize("precision", ["bf16"] if CUDA else [])
def test_cuda_gan_step_runs_and_writes_d(tmp_path, precision):
    cfg = tiny_config(tmp_path, device="cuda", solver="gan", precision=precision,
                      channels_last=True, iterations=6, save_every=3, validation=None,
                      loss_fn=[{"name": "l1", "weight": 1.0},
                               {"name": "perceptual", "weight": 1.0, "params": {"layer": "vgg22"}},
                               {"name": "adversarial", "weight": 1e-3}],
                      allow_random_vgg=True, discriminator={"params": {"num_feat": 8}})
    train(config_mod.from_dict(cfg), progress=False)
    assert (tmp_path / "run/discriminator.pt").exists()
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text()
            .splitlines() if json.loads(line)["kind"] == "train"]
    assert rows and all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in rows)

"""Distributed training (torchrun, gloo on CPU): two ranks train exactly the single-process run.

The sampler hands each rank every second item of the same global batch, and DDP averages the
two half-batch gradients of a mean-reduced loss, which is the full-batch gradient up to float
rounding. So a 2-rank run must end where the 1-process run with the same config ends, with
one set of files (rank 0 writes), both ranks holding the same weights and learning rate, and a
resume under torchrun that continues the same run.
"""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_config

from srlib import config as config_mod
from srlib.train import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch built without torch.distributed")

WORKER = ROOT / "tests" / "ddp_worker.py"
# ReduceLROnPlateau that lowers the lr at every validation after the first (no gain of
# 100 dB ever comes): it steps on the validation metric, which only rank 0 computes, so it
# is the scheduler that shows whether the ranks keep the same learning rate.
PLATEAU = {"name": "reduce", "params": {"patience": 0, "threshold": 100.0,
                                        "threshold_mode": "abs", "factor": 0.5}}


def _config(tmp_path, name, **changes):
    """The tiny config, 8 iterations of batch 4 (2 items per rank), validating every 4."""
    folder = tmp_path / name
    folder.mkdir()
    cfg = tiny_config(tmp_path, logdir=str(folder / "run"), iterations=8, save_every=4,
                      scheduler=PLATEAU,
                      validation={"root": str(ROOT / "data/Set5"), "name": "set5",
                                  "every": 4, "max_images": 1})
    cfg.update(changes)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg))
    return path, folder / "run"


def _torchrun(*args, log, timeout=120):
    """``torchrun --nproc_per_node 2 --standalone ARGS`` on CPU; returns (exit code, output)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    with open(log, "w") as out:  # a file, not a pipe: a stuck worker cannot block the reader
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # deadlocked ranks: torchrun stops its workers
            proc.send_signal(signal.SIGTERM)  # on SIGTERM (they run in their own sessions)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"torchrun did not finish in {timeout}s (ranks deadlocked?):\n"
                        + log.read_text()[-3000:])
    return proc.returncode, log.read_text()


def _log(run, kind="train"):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _close(a: dict, b: dict, rel=1e-3):
    """Same keys, and every tensor within ``rel`` of the other (relative to its norm).

    Not 1e-6: the all-reduce sums the half-batch gradients in another order, and Adam divides
    each update by the root of its running squared gradient, so for a parameter whose gradient
    is near zero (a small bias) a rounding difference becomes a visible one (4e-4 seen after 8
    steps). A wrong batch split or an unsynchronised step differs by orders of magnitude more.
    """
    assert a.keys() == b.keys()
    for k in a:
        diff = (a[k].double() - b[k].double()).norm()
        scale = b[k].double().norm().clamp_min(1e-12)
        assert diff / scale <= rel, f"{k}: relative difference {float(diff / scale):.2e}"


def _weights(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The 1-process runs the 2-rank ones must reproduce: 8 iterations and 12 iterations."""
    tmp = tmp_path_factory.mktemp("single")
    runs = {}
    for n in (8, 12):
        path, run = _config(tmp, f"it{n}", iterations=n)
        train(config_mod.load(path), progress=False)
        runs[n] = run
    return runs


def test_two_ranks_train_the_single_process_run_then_resume(tmp_path, single):
    config, run = _config(tmp_path, "ddp")

    # 1. the real command line under torchrun
    code, out = _torchrun("-m", "srlib", "train", "--config", config, "--no-progress",
                          log=tmp_path / "first.log")
    assert code == 0, out[-3000:]
    names = sorted(p.name for p in run.iterdir())
    events = [n for n in names if n.startswith("events.out.tfevents")]  # TensorBoard, if there
    assert [n for n in names if n not in events] == ["best.pt", "config.json", "last.pt",
                                                     "metrics.jsonl"]  # one set, no tmp files
    assert len(events) <= 1  # rank 0 alone writes
    assert [r["iteration"] for r in _log(run)] == list(range(1, 9))  # rank 0 alone logs
    assert [r["iteration"] for r in _log(run, "val")] == [0, 4, 8]  # untrained model first
    last, ref = _weights(run / "last.pt"), _weights(single[8] / "last.pt")
    assert last["iteration"] == 8
    _close(last["model"], ref["model"])
    # the logged loss is the whole batch's (both ranks'), as in the 1-process run
    ref_loss = {r["iteration"]: r["loss"] for r in _log(single[8])}
    assert all(r["loss"] == pytest.approx(ref_loss[r["iteration"]], rel=1e-4)
               for r in _log(run))
    best = _weights(run / "best.pt")
    best_val = max(_log(run, "val"), key=lambda r: r["psnr_y"])
    assert best["iteration"] == best_val["iteration"]

    # 2. resume from last.pt with more iterations, every rank saying what it ended with
    dump = tmp_path / "ranks"
    code, out = _torchrun(WORKER, dump, 0, "--", "train", "--config", config, "--no-progress",
                          "--resume", run / "last.pt", "--set", "iterations=12",
                          log=tmp_path / "resume.log")
    assert code == 0, out[-3000:]
    assert [r["iteration"] for r in _log(run)] == list(range(1, 13))  # continued, no repeats
    assert [r["iteration"] for r in _log(run, "val")] == [0, 4, 8, 12]
    r0, r1 = _weights(dump / "rank0.pt"), _weights(dump / "rank1.pt")
    assert r0["iteration"] == r1["iteration"] == 12
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    assert r0["lr"] == r1["lr"]  # the plateau scheduler stepped alike on both ranks
    assert r0["best_psnr"] == r1["best_psnr"]
    last, ref = _weights(run / "last.pt"), _weights(single[12] / "last.pt")
    assert all(torch.equal(last["model"][k], r0["model"][k]) for k in r0["model"])
    _close(last["model"], ref["model"])
    ref_lr = [r["lr"] for r in _log(single[12])]
    assert ref_lr[-1] < ref_lr[0]  # the plateau scheduler did lower the lr
    assert [r["lr"] for r in _log(run)] == pytest.approx(ref_lr)
    assert "trained 12 iterations" in out, out[-3000:]


def test_time_budget_stops_all_ranks_at_the_same_iteration(tmp_path):
    """Rank 0 starts its clock late; under ``max_minutes`` the ranks must still stop at the
    same iteration (not deadlock). The GAN solver, so both DDP-wrapped nets are checked."""
    config, run = _config(tmp_path, "gan", iterations=10**6, max_minutes=0.03, validation=None,
                          save_every=10**6, log_every=10, scheduler=None, solver="gan",
                          discriminator={"params": {"num_feat": 8}},
                          loss_fn=[{"name": "l1", "weight": 1.0},
                                   {"name": "adversarial", "weight": 1e-3}])
    dump = tmp_path / "ranks"
    code, out = _torchrun(WORKER, dump, 1.0, "--", "train", "--config", config, "--no-progress",
                          log=tmp_path / "run.log")
    assert code == 0, out[-3000:]
    r0, r1 = _weights(dump / "rank0.pt"), _weights(dump / "rank1.pt")
    assert 0 < r0["iteration"] == r1["iteration"] < 10**6
    # Parameters agree exactly. BatchNorm running statistics (the SRGAN discriminator's) are
    # each rank's own, from its half of the batch, as with any DDP run without SyncBatchNorm:
    # DDP re-sends rank 0's at every forward, and rank 0's are the ones saved.
    for net in ("model", "discriminator"):
        params = [k for k in r0[net] if "running_" not in k and "num_batches" not in k]
        assert all(torch.equal(r0[net][k], r1[net][k]) for k in params), net
    assert _weights(run / "last.pt")["iteration"] == r0["iteration"]
    assert "stopped by max_minutes" in out, out[-3000:]


def test_batch_that_does_not_split_over_the_ranks_is_a_config_error(tmp_path):
    """3 items over 2 ranks would weight the ranks' gradients unequally: refused up front."""
    from srlib import build
    from srlib.distributed import DistInfo
    cfg = config_mod.from_dict(tiny_config(tmp_path, dataset={
        "root": str(tmp_path / "t91"), "name": "t91", "params": {"batch_size": 3}}))
    with pytest.raises(config_mod.ConfigError, match="batch_size.*multiple of 2"):
        build.run(cfg, progress=False, dist=DistInfo(rank=0, world_size=2))

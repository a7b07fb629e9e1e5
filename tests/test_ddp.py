"""Distributed training (torchrun, gloo on CPU): two ranks train exactly the single-process run.

The sampler hands each rank every second item of the same global batch, and DDP averages the
two half-batch gradients of a mean-reduced loss, which is the full-batch gradient up to float
rounding. So a 2-rank run must end where the 1-process run with the same config ends, with
one set of files (rank 0 writes), both ranks holding the same weights and learning rate, and a
resume under torchrun that continues the same run. The same holds with the two ranks in two
torchrun "nodes" (on 127.0.0.1), and when one rank is killed and the command run again.

Every torchrun here is bounded by a timeout: a stuck run is stopped (its workers too) and the
test fails with the end of its log, rather than hanging.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import torch
from conftest import ROOT, tiny_config

from srlib import config as config_mod
from srlib.train import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch built without torch.distributed")

WORKER = ROOT / "tests" / "ddp_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# ReduceLROnPlateau that lowers the lr at every validation after the first (no gain of
# 100 dB ever comes): it steps on the validation metric, which only rank 0 computes, so it
# is the scheduler that shows whether the ranks keep the same learning rate.
PLATEAU = {"name": "reduce", "params": {"patience": 0, "threshold": 100.0,
                                        "threshold_mode": "abs", "factor": 0.5}}
ONE_SET = ["best.pt", "config.json", "last.pt", "metrics.jsonl", "srlib.lock"]
RESUMING = "resuming the unfinished run"  # srlib.logdir says it on rank 0 only


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


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def _start(cmd, log):
    """Start ``cmd`` with its output in the file ``log`` (a file, not a pipe: a stuck worker
    cannot block a reader)."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def _stop(proc):
    """End a torchrun and its workers (they run in sessions of their own): SIGTERM to torchrun,
    which passes it on, then SIGKILL to whatever is left."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def _wait(procs_and_logs, timeout, what="torchrun"):
    """Wait for every process; past ``timeout`` seconds in all, stop them and fail with the end
    of each log. Returns their exit codes."""
    deadline = time.monotonic() + timeout
    try:
        for proc, _ in procs_and_logs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc, _ in procs_and_logs:
            _stop(proc)
        tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-2000:]}"
                          for _, log in procs_and_logs)
        pytest.fail(f"{what} did not finish in {timeout}s (ranks deadlocked?):\n{tails}")
    return [proc.returncode for proc, _ in procs_and_logs]


def _torchrun(*args, log, timeout=240):
    """``torchrun --nproc_per_node 2 --standalone ARGS`` on CPU; returns (exit code, output)."""
    cmd = [*TORCHRUN, "--nproc_per_node", "2", "--standalone", *map(str, args)]
    [code] = _wait([(_start(cmd, log), log)], timeout)
    return code, log.read_text()


def _log(run, kind="train"):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _files(run):
    """The run folder's files, TensorBoard's events apart (there when it is installed)."""
    names = sorted(p.name for p in run.iterdir())
    events = [n for n in names if n.startswith("events.out.tfevents")]
    return [n for n in names if n not in events], events


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


def _equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def _weights(path):
    return torch.load(path, weights_only=True)


def _g(state):
    """G's weights in a checkpoint (format v2)."""
    return state["networks"]["g"]["weights"]


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
    names, events = _files(run)
    assert names == ONE_SET  # one set, no tmp files
    assert len(events) <= 1  # rank 0 alone writes
    assert [r["iteration"] for r in _log(run)] == list(range(1, 9))  # rank 0 alone logs
    assert [r["iteration"] for r in _log(run, "val")] == [0, 4, 8]  # untrained model first
    last, ref = _weights(run / "last.pt"), _weights(single[8] / "last.pt")
    assert last["iteration"] == 8
    _close(_g(last), _g(ref))
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
    assert out.count(RESUMING) <= 1  # rank 0 alone speaks (an explicit --resume: no line)
    assert [r["iteration"] for r in _log(run)] == list(range(1, 13))  # continued, no repeats
    assert [r["iteration"] for r in _log(run, "val")] == [0, 4, 8, 12]
    r0, r1 = _weights(dump / "rank0.pt"), _weights(dump / "rank1.pt")
    assert r0["iteration"] == r1["iteration"] == 12
    assert _equal(r0["g"], r1["g"])
    assert r0["lr"] == r1["lr"]  # the plateau scheduler stepped alike on both ranks
    assert r0["best_psnr"] == r1["best_psnr"]
    last, ref = _weights(run / "last.pt"), _weights(single[12] / "last.pt")
    assert _equal(_g(last), r0["g"])
    _close(_g(last), _g(ref))
    ref_lr = [r["lr"] for r in _log(single[12])]
    assert ref_lr[-1] < ref_lr[0]  # the plateau scheduler did lower the lr
    assert [r["lr"] for r in _log(run)] == pytest.approx(ref_lr)
    assert "trained 12 iterations" in out, out[-3000:]
    assert _files(run)[0] == ONE_SET


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
    for net in ("g", "d"):
        params = [k for k in r0[net] if "running_" not in k and "num_batches" not in k]
        assert all(torch.equal(r0[net][k], r1[net][k]) for k in params), net
    assert _weights(run / "last.pt")["iteration"] == r0["iteration"]
    assert "stopped by max_minutes" in out, out[-3000:]


def test_batch_that_does_not_split_over_the_ranks_is_a_config_error(tmp_path):
    """3 items over 2 ranks would weight the ranks' gradients unequally: refused up front."""
    from srlib.distributed import DistInfo
    from srlib.train import make_run
    cfg = config_mod.from_dict(tiny_config(tmp_path, dataset={
        "root": str(tmp_path / "t91"), "name": "t91", "params": {"batch_size": 3}}))
    with pytest.raises(config_mod.ConfigError, match="batch_size.*multiple of 2"):
        make_run(cfg, progress=False, dist=DistInfo(rank=0, world_size=2))


# A run long enough to kill in the middle: 300 iterations (about 3 s of training on two CPU
# ranks; torchrun and the imports take longer), last.pt every 25, a validation every 100.
LONG = 300


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """The config of the multi-node and kill tests, and its uninterrupted 2-rank run
    (standalone torchrun): (config path, tmp folder, that run's logdir)."""
    tmp = tmp_path_factory.mktemp("long")
    config, run = _config(tmp, "reference", iterations=LONG, save_every=25, scheduler=None,
                          validation={"root": str(ROOT / "data/Set5"), "name": "set5",
                                      "every": 100, "max_images": 1})
    code, out = _torchrun("-m", "srlib", "train", "--config", config, "--no-progress",
                          log=tmp / "reference.log")
    assert code == 0, out[-3000:]
    return config, tmp, run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(tmp_path, config, dump, logdirs, timeout=300):
    """Two torchrun "nodes" on 127.0.0.1 (c10d rendezvous, one gloo rank each) running the
    worker on ``config``, node i with ``logdirs[i]``; returns (exit codes, logs)."""
    port, job = _free_port(), f"srlib-test-{os.getpid()}-{tmp_path.name}"
    nodes = []
    for node, logdir in enumerate(logdirs):
        log = tmp_path / f"node{node}.log"
        cmd = [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", job,
               str(WORKER), str(dump), "0", "--", "train", "--config", str(config),
               "--no-progress", "--set", f"logdir={logdir}"]
        nodes.append((_start(cmd, log), log))
    codes = _wait(nodes, timeout, "the two torchrun nodes")
    return codes, [log.read_text() for _, log in nodes]


def test_two_nodes_on_loopback_train_in_step(tmp_path, long_run):
    """Two torchrun "nodes" (``--nnodes 2 --nproc_per_node 1``, c10d rendezvous on 127.0.0.1),
    one rank each, train one run: both end on the same iteration with identical weights, rank 0
    alone writes (one set of files, one log), and the run is the standalone 2-rank run's.

    c10d numbers the nodes itself (torch 2.14.1 sorts them by host name, then torchrun's
    process id; ``--node-rank`` is only read by the static rendezvous, so it is left out), so
    either node may hold rank 0: found from the dumps and logs, not assumed. Both
    nodes are one host here, so each one's rank is its host's first and both decode the
    training set's cache (atomic writes of identical bytes, as on two hosts sharing a disk)."""
    config, _, reference = long_run
    run, dump = tmp_path / "run", tmp_path / "ranks"
    codes, logs = _two_nodes(tmp_path, config, dump, [run, run])
    assert codes == [0, 0], "\n".join(f"--- node {n}:\n{t[-2000:]}" for n, t in enumerate(logs))

    r0, r1 = _weights(dump / "rank0.pt"), _weights(dump / "rank1.pt")
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["iteration"] == r1["iteration"] == LONG
    assert _equal(r0["g"], r1["g"])  # in step: the same weights on both nodes
    assert r0["best_psnr"] == r1["best_psnr"]
    names, events = _files(run)
    assert names == ONE_SET and len(events) <= 1  # one set of files
    assert [r["iteration"] for r in _log(run)] == list(range(1, LONG + 1))  # one log
    speaking = [t for t in logs if f"trained {LONG} iterations" in t]
    assert len(speaking) == 1 and speaking[0].count(f"trained {LONG} iterations") == 1
    assert all("validation at" not in t for t in logs if t is not speaking[0])
    last = _weights(run / "last.pt")
    assert _equal(_g(last), r0["g"])
    # two nodes or one: the same gloo all-reduce of the same half-batches, bit for bit
    assert _equal(_g(last), _g(_weights(reference / "last.pt")))


def test_hosts_that_see_different_logdirs_are_refused_a_resume(tmp_path, long_run):
    """A multi-host run whose hosts each keep their own logdir cannot resume: rank 0's host
    finds the unfinished last.pt, the other host finds nothing and would start from 0. Both
    ranks stop with a config error before training, whichever node is rank 0."""
    config, _, reference = long_run
    state = _weights(reference / "last.pt")
    state["finished"] = False  # the run as a kill leaves it, on one host's disk only
    (tmp_path / "seen").mkdir()
    torch.save(state, tmp_path / "seen" / "last.pt")
    codes, logs = _two_nodes(tmp_path, config, tmp_path / "ranks",
                             [tmp_path / "seen", tmp_path / "unseen"], timeout=240)
    said = "\n".join(f"--- node {n}:\n{t[-2000:]}" for n, t in enumerate(logs))
    assert 0 not in codes, said
    assert all("disagree on the iteration to resume from" in t for t in logs), said
    assert not (tmp_path / "ranks").exists() or not any((tmp_path / "ranks").iterdir())
    assert not (tmp_path / "unseen" / "last.pt").exists()  # nothing trained, nothing saved
    assert _weights(tmp_path / "seen" / "last.pt")["iteration"] == LONG


def _train_records(run):
    """metrics.jsonl's train iterations so far (a line being written is skipped)."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "train":
            out.append(record["iteration"])
    return out


def _kill_rank_once_past_a_checkpoint(proc, run, rank, log, timeout=240):
    """Once last.pt exists and training is past it, SIGKILL the worker of ``rank`` (a child
    of torchrun, found by its RANK); returns (last.pt's iteration, the one logged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"torchrun ended (exit {proc.returncode}) before a rank could be "
                        f"killed mid-run:\n{log.read_text()[-3000:]}")
        if (run / "last.pt").exists():
            saved = _weights(run / "last.pt")["iteration"]
            logged = _train_records(run)
            if logged and logged[-1] > saved:
                break
        time.sleep(0.05)
    else:
        _stop(proc)
        pytest.fail(f"no last.pt and training past it in {timeout}s:\n{log.read_text()[-3000:]}")
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if p.environ().get("RANK") == str(rank)]
    assert len(workers) == 1, workers
    workers[0].send_signal(signal.SIGKILL)
    return saved, logged[-1]


@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_rank_then_the_same_command_resumes_exactly(tmp_path, long_run, victim):
    """SIGKILL one worker of a 2-rank run past a checkpoint: torchrun (no --max-restarts) ends
    non-zero; the same command again resumes from last.pt, and the run ends with the weights
    of the uninterrupted run, bit for bit: every step after the resume is the one that run
    took (the same batches, the restored optimiser and RNG, the same two-rank sum)."""
    config, _, reference = long_run
    run = tmp_path / "run"
    cmd = [*TORCHRUN, "--nproc_per_node", "2", "--standalone", "-m", "srlib", "train",
           "--config", str(config), "--no-progress", "--set", f"logdir={run}"]
    log = tmp_path / "killed.log"
    proc = _start(cmd, log)
    saved, logged = _kill_rank_once_past_a_checkpoint(proc, run, victim, log)
    [code] = _wait([(proc, log)], 120, "torchrun after the kill")
    assert code != 0, log.read_text()[-3000:]
    assert RESUMING not in log.read_text()
    state = _weights(run / "last.pt")
    assert not state["finished"] and saved <= state["iteration"] < LONG

    log = tmp_path / "relaunch.log"
    [code] = _wait([(_start(cmd, log), log)], 240)
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert out.count(RESUMING) == 1, out[-3000:]  # rank 0 alone says it
    assert f"from iteration {state['iteration']}\n" in out, out[-3000:]
    assert f"trained {LONG} iterations" in out
    assert _train_records(run) == list(range(1, LONG + 1))  # no repeats, no gaps
    assert [r["iteration"] for r in _log(run, "val")] == [0, 100, 200, 300]
    names, events = _files(run)
    assert names == ONE_SET  # no .tmp left by a kill mid-save
    assert len(events) <= 2  # TensorBoard: one file per launch, rank 0's
    last, ref = _weights(run / "last.pt"), _weights(reference / "last.pt")
    assert last["finished"] and last["iteration"] == LONG
    assert _equal(_g(last), _g(ref)), "the resumed run left the uninterrupted run's path"
    assert last["best_psnr"] == ref["best_psnr"]
    assert [r["psnr_y"] for r in _log(run, "val")] == [r["psnr_y"] for r in _log(reference, "val")]

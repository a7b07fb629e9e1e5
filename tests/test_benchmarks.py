"""benchmarks/: the pieces bench.py is made of run against today's srlib, on a tiny config, and
measure without patching it. Timings are not checked: only that each figure is there."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, write_config

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_loader  # noqa: E402
import bench_train  # noqa: E402
import common  # noqa: E402
from bench_infer import run_case  # noqa: E402
from reference_loop import ReferenceTrainer  # noqa: E402

import srlib.train  # noqa: E402
from srlib import config as config_mod  # noqa: E402

linux = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


def tiny(tmp_path, **changes):
    path = write_config(tmp_path, **{"validation": None, "iterations": 3, "log_every": 1,
                                     **changes})
    return config_mod.load(path)


@linux
def test_one_proc_reader_reads_status_meminfo_and_smaps(tmp_path):
    status = common.proc_fields("/proc/self/status")
    assert status["VmRSS"] > 0 and status["VmHWM"] >= status["VmRSS"]
    assert common.proc_bytes("MemAvailable", "/proc/meminfo") > 0
    assert common.proc_fields("/proc/self/smaps_rollup")["Rss"] > 0
    assert common.proc_fields(tmp_path / "missing") == {}
    assert common.proc_bytes("NoSuchField") == 0


def test_machine_line_and_table():
    m = common.finished(common.machine())
    line = common.describe_machine(m)
    assert "usable of" in line and "load average at start" in line and ", at end" in line
    table = common.markdown_table([common.Row("train", "case", "1 it/s", "2 it/s", "0.5x",
                                              "<= 1.05x", True), common.Row("a", "b", "c", "d", "e")])
    assert table.splitlines()[2] == "| train | case | 1 it/s | 2 it/s | 0.5x | <= 1.05x | yes |"
    assert table.splitlines()[3].endswith("| - |  |")


def test_reference_loop_refuses_what_it_does_not_run(tmp_path):
    cfg = tiny(tmp_path)
    for precision in ("fp16", "bf16"):
        with pytest.raises(ValueError, match="GPU only"):
            ReferenceTrainer(cfg, "cpu", precision)
    with pytest.raises(ValueError, match="fp64"):
        ReferenceTrainer(cfg, "cpu", "fp64")
    ref = ReferenceTrainer(cfg, "cpu", "fp32")
    assert not ref.scaler.is_enabled() and ref.step() > 0
    # compiled where srlib compiles: a CUDA-graph config trains eager on a CPU, in both
    graphs = tiny(tmp_path, compile="reduce-overhead")
    assert not ReferenceTrainer(graphs, "cpu", "fp32").compiled
    run = srlib.train.make_run(graphs, device="cpu", progress=False)
    assert run.g.wrapped is run.g.module


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_reference_loop_fp16_scales_its_loss(tmp_path):
    ref = ReferenceTrainer(tiny(tmp_path), "cuda", "fp16")
    assert ref.scaler.is_enabled()
    before = [p.detach().clone() for p in ref.model.parameters()]
    ref.seconds_per_step(3)
    assert any(not torch.equal(a, b) for a, b in zip(before, ref.model.parameters()))


def test_train_pieces_time_fit_and_steps_without_patching(tmp_path):
    cfg = tiny(tmp_path)
    loop_before = vars(srlib.train).copy()
    iterations = bench_train.srlib_iterations(cfg)  # a whole fit, timed by its own log
    assert len(iterations) == 2 and all(t > 0 for t in iterations)
    ours, theirs = bench_train.interleaved_steps(cfg, 2)
    assert len(ours) == len(theirs) == 2
    run = srlib.train.make_run(cfg, device="cpu", progress=False)
    loading = bench_train.loading_seconds(run, 2)
    assert len(loading) == 2
    assert vars(srlib.train) == loop_before  # nothing in srlib was swapped
    res = bench_train.TrainResult("tiny", "tiny config", 4, 0, [0.1, 0.1], iterations,
                                  loading, ours, theirs)
    summary = res.summary()
    assert math.isfinite(summary["interleaved_estimate_ratio"]) and summary["srlib_it_per_s"] > 0
    rows = bench_train.report(res, 2)
    assert [r.section for r in rows] == ["train", "train"] and rows[1].met is not None
    json.dumps(summary)


def test_loader_times_the_batches_fit_iterates(tmp_path):
    first, seconds = bench_loader.time_loader(tiny(tmp_path, iterations=4), 3)
    assert first >= 0 and seconds > 0


@linux
def test_infer_case_runs_in_its_own_process():
    res = run_case(16, "srlib upscale, untiled", "untiled", None, threads=1, timeout=300)
    assert res.seconds > 0 and res.peak_rss >= res.rss_before > 0
    assert res.summary()["mp_per_s"] > 0


def test_bench_help_and_scripts_import():
    for script in ("bench.py", "profile_step.py", "dataset_memory.py", "upscale_memory.py"):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

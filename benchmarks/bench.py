#!/usr/bin/env python
"""srlib benchmarks: each srlib figure beside a plain PyTorch reference measured in the same run.

    python benchmarks/bench.py [--quick] [--section train|loader|infer|cuda|all] [--json out.json]

Sections (see benchmarks/README.md for what the figures mean):

* train  - srlib's training loop (``srlib.train.fit``: data, step, EMA, scheduler, checks, logs)
           against the plain loop of reference_loop.py on pre-made tensors; target: srlib's
           time per iteration at most 1.05x the reference's.
* loader - patches/s of srlib's training loader (PairedPatchDataset on T91, SeededItems,
           IterationBatchSampler, DataLoader) with 0 and 2 workers against the patches/s the
           model consumes; target: at least 5x.
* infer  - output megapixels/s and peak memory of ``srlib.inference.upscale`` (default
           MSRResNet, 64 ch / 16 blocks), tiled and untiled, against a plain ``model(x)``; each
           case runs in its own process so its peak RSS is its own. Target: tiled x4 of a
           1024x1024 image under 2 GB on CPU.
* cuda   - only with a GPU: the full model's it/s in fp32, bf16 + channels_last, with the
           on-device data path and with torch.compile, each beside the plain loop on pre-made
           GPU tensors (a ratio near 1: the data path keeps up); fp32/fp16 inference.

Not a test: figures depend on the machine and on what else runs on it, which is why every
ratio compares two things measured in the same run, interleaved.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing srlib

import torch  # noqa: E402

from srlib import build  # noqa: E402
from srlib import config as config_mod  # noqa: E402
from srlib import train as train_mod  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_loop import ReferenceTrainer, reference_train_steps  # noqa: E402

QUICK_CONFIG = ROOT / "configs/quick/msrresnet.json"
FULL_CONFIG = ROOT / "configs/msrresnet_x4.json"
T91 = "data/T91"

# (rounds, measured iterations per round) for each config; the first iteration of every
# round is a warm-up and is not counted.
PLANS = {
    "quick": {"train": {"quick": (2, 4), "full": (1, 2)},
              "interleaved": {"quick": 8, "full": 3}, "loader_batches": 30,
              "infer_sizes": [256], "cuda_steps": 50},
    "default": {"train": {"quick": (4, 6), "full": (3, 3)},
                "interleaved": {"quick": 16, "full": 4}, "loader_batches": 100,
                "infer_sizes": [256, 1024], "cuda_steps": 200},
}
TARGET_TRAIN, TARGET_LOADER, TARGET_TILED_GB = 1.05, 5.0, 2.0
CUDA_INFER_LR = 1024  # LR side of the GPU inference cases (output 4x that)


# --------------------------------------------------------------------------- machine

def machine() -> dict:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(),
            "memory_gb": _meminfo("MemTotal") / 2**30 if _meminfo("MemTotal") else None,
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def describe_machine(m: dict) -> str:
    load = m.get("load_average_start")
    text = (f"{m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores, "
            f"{m['memory_gb']:.0f} GB RAM, torch {m['torch']} ({m['torch_threads']} threads), "
            f"Python {m['python']}")
    if m.get("gpu"):
        text += f", GPU: {m['gpu']}"
    if load:
        text += f"; load average at start {load[0]:.1f}"
        if m.get("load_average_end"):
            text += f", at end {m['load_average_end'][0]:.1f}"
    return text


def _meminfo(key: str) -> int:
    """Bytes of a /proc/meminfo field (0 when unknown)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- helpers

def train_config(path: Path, logdir: Path, iterations: int, device: str = "cpu",
                 workers: int | None = None, **extra) -> config_mod.Config:
    """The shipped config with validation, time budget and periodic checkpoints off, trained
    on the shipped T91 images (the full config's DIV2K need not be prepared)."""
    cfg_workers = json.loads(path.read_text())["dataset"]["params"].get("num_workers", 0)
    if workers is None:
        workers = min(cfg_workers, os.cpu_count() or 1)
    overrides = [f"logdir={logdir}", f"iterations={iterations}", "max_minutes=null",
                 "validation=null", "save_every=1000000000", f"device={device}",
                 "dataset.name=t91", f"dataset.root={T91}",
                 f"dataset.params.num_workers={workers}",
                 f"dataset.params.pin_memory={'true' if device == 'cuda' else 'false'}"]
    overrides += [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    return config_mod.load(path, overrides)


@contextlib.contextmanager
def instrument(solver: str):
    """Record (enter, exit) of every step: the time between two enters is one iteration of
    the loop; what is not inside the step is data loading and bookkeeping."""
    stamps, step = [], train_mod.STEPS[solver]

    def timed(run, lr, hr):
        start = time.perf_counter()
        logs = step(run, lr, hr)  # on the CPU every op has finished when it returns
        stamps.append((start, time.perf_counter()))
        return logs

    train_mod.STEPS[solver] = timed
    try:
        yield stamps
    finally:
        train_mod.STEPS[solver] = step


def srlib_iterations(cfg: config_mod.Config, device: str) -> dict:
    """Run the training loop; per-iteration and per-step seconds, the warm-up left out."""
    run = build.run(cfg, device=device, progress=False)
    with instrument(cfg.solver) as stamps:
        train_mod.fit(run)
    iters = [stamps[i + 1][0] - stamps[i][0] for i in range(1, len(stamps) - 1)]
    steps = [stamps[i][1] - stamps[i][0] for i in range(1, len(stamps) - 1)]
    log = [json.loads(line) for line in (Path(cfg.logdir) / "metrics.jsonl").read_text()
           .splitlines()]
    rates = [r["it_per_s"] for r in log if r["kind"] == "train"]
    return {"iteration_s": iters, "step_s": steps, "logged_it_per_s": rates}


def interleaved_steps(cfg: config_mod.Config, steps: int, device: str) -> tuple[list, list]:
    """srlib's per-iteration compute and the reference step, alternated one step at a time on
    the same tensors, so that load from other jobs falls on both alike. srlib's side is what
    the loop does per iteration besides fetching data and logging: the step, the EMA
    update, the scheduler step. Returns (srlib seconds, reference seconds), warm-up dropped."""
    run = build.run(cfg, device=device, progress=False)
    ref = ReferenceTrainer(cfg, device, cfg.precision, cfg.channels_last)
    lr, hr = train_mod._to_device(run, ref.lr), train_mod._to_device(run, ref.hr)
    step = train_mod.STEPS[cfg.solver]

    def srlib_step() -> float:
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        start = time.perf_counter()
        step(run, lr, hr)  # on the CPU every op has finished when it returns
        if run.ema is not None:
            run.ema.update()
        if run.scheduler is not None and not train_mod._on_plateau(run.scheduler):
            run.scheduler.step()
        return time.perf_counter() - start

    ours, theirs = [], []
    for i in range(steps + 1):
        pair = (srlib_step, ref.step) if i % 2 else (ref.step, srlib_step)
        times = {f: f() for f in pair}
        if i:  # the first of each is a warm-up
            ours.append(times[srlib_step])
            theirs.append(times[ref.step])
    return ours, theirs


def fmt_rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- train

def section_train(plan, tmp: Path, results: dict, rows: list) -> None:
    print("\n## Training loop: srlib solve() vs plain PyTorch loop (CPU, fp32)", flush=True)
    print("  srlib: the shipped config, validation and periodic checkpoints off, T91 data "
          "through srlib's loader; reference: reference_loop.py on pre-made tensors.")
    results["train"] = []
    for name, path in (("quick", QUICK_CONFIG), ("full", FULL_CONFIG)):
        rounds, steady = plan["train"][name]
        probe = train_config(path, tmp / "probe", 1, precision="fp32", channels_last=False)
        mp = probe.model_params
        label = (f"{name} config ({mp.get('num_feat')} ch/{mp.get('num_block')} blocks, "
                 f"batch {probe.dataset.params.batch_size}, HR {probe.patch_size})")
        print(f"\n### {label}: {rounds} round(s) x {steady} measured iterations "
              f"(+1 warm-up each), dataloader workers {probe.dataset.params.num_workers}",
              flush=True)
        ref, ours, steps, logged = [], [], [], []
        for r in range(rounds):
            cfg = train_config(path, tmp / f"{name}-{r}", steady + 2, precision="fp32",
                               channels_last=False)
            order = ("ref", "srlib") if r % 2 == 0 else ("srlib", "ref")
            for which in order:
                if which == "ref":
                    ref += reference_train_steps(cfg, steady + 1)[1:]
                else:
                    got = srlib_iterations(cfg, "cpu")
                    ours += got["iteration_s"]
                    steps += got["step_s"]
                    logged += got["logged_it_per_s"]
            print(f"  round {r + 1}: reference {median(ref):.3f} s/step, srlib "
                  f"{median(ours):.3f} s/iteration (medians so far)", flush=True)
        batch = cfg.dataset.params.batch_size
        t_ref, t_ours, t_step = median(ref), median(ours), median(steps)
        outside = [i - s for i, s in zip(ours, steps)]
        entry = {"config": name, "label": label, "batch": batch,
                 "reference_s_per_step": ref, "srlib_s_per_iteration": ours,
                 "srlib_s_in_train_step": steps, "srlib_logged_it_per_s": logged,
                 "ratio_median": t_ours / t_ref, "ratio_min": min(ours) / min(ref),
                 "srlib_outside_step_s_median": median(outside),
                 "srlib_it_per_s": 1 / t_ours, "srlib_img_per_s": batch / t_ours,
                 "reference_it_per_s": 1 / t_ref, "reference_img_per_s": batch / t_ref}
        results["train"].append(entry)
        print(f"  reference: {1 / t_ref:.3f} steps/s, {batch / t_ref:.2f} images/s")
        print(f"  srlib:     {1 / t_ours:.3f} it/s,    {batch / t_ours:.2f} images/s "
              f"(train_step alone {t_step:.3f} s; data loading + bookkeeping "
              f"{median(outside) * 1e3:.1f} ms per iteration)")
        print(f"  ratio srlib/reference time per iteration: {entry['ratio_median']:.3f} "
              f"(median), {entry['ratio_min']:.3f} (fastest of each); target <= "
              f"{TARGET_TRAIN}")
        n = plan["interleaved"][name]
        step_ours, step_ref = interleaved_steps(cfg, n, "cpu")
        t_si, t_ri = median(step_ours), median(step_ref)
        # each pair ran back to back, so its ratio is immune to load that comes and goes
        step_ratio = median([a / b for a, b in zip(step_ours, step_ref)])
        estimate = step_ratio + median(outside) / t_ri
        entry.update(interleaved_srlib_step_s=step_ours, interleaved_reference_step_s=step_ref,
                     interleaved_step_ratio=step_ratio, interleaved_estimate_ratio=estimate)
        print(f"  step by step, alternated ({n} pairs): srlib {t_si:.3f} s, reference "
              f"{t_ri:.3f} s (medians); median ratio of the pairs {step_ratio:.3f}; with "
              f"srlib's data loading + bookkeeping added: {estimate:.3f}; target <= "
              f"{TARGET_TRAIN}", flush=True)
        rows.append(("train", label + ", whole runs alternated",
                     f"{fmt_rate(entry['srlib_it_per_s'])} it/s, "
                     f"{fmt_rate(entry['srlib_img_per_s'])} img/s",
                     f"{fmt_rate(entry['reference_it_per_s'])} it/s, "
                     f"{fmt_rate(entry['reference_img_per_s'])} img/s",
                     f"{entry['ratio_median']:.3f}x time (fastest: {entry['ratio_min']:.3f}x)",
                     "(load-sensitive)", None))
        rows.append(("train", label + ", steps alternated + srlib's loading/bookkeeping",
                     f"{t_si:.3g} s/step + {median(outside) * 1e3:.1f} ms",
                     f"{t_ri:.3g} s/step", f"{estimate:.3f}x time", f"<= {TARGET_TRAIN}x",
                     estimate <= TARGET_TRAIN))


# --------------------------------------------------------------------------- loader

def section_loader(plan, tmp: Path, results: dict, rows: list) -> None:
    print("\n## Data loader: srlib's training loader vs what the model consumes (CPU)",
          flush=True)
    results["loader"] = []
    batches = plan["loader_batches"]
    consumed = {e["config"]: e["srlib_img_per_s"] for e in results.get("train", [])}
    for name, path in (("quick", QUICK_CONFIG), ("full", FULL_CONFIG)):
        if name not in consumed:  # train section not run: time a few reference steps
            cfg = train_config(path, tmp / f"consume-{name}", 3, precision="fp32",
                               channels_last=False)
            t = median(reference_train_steps(cfg, 3)[1:])
            consumed[name] = cfg.dataset.params.batch_size / t
            source = "reference loop"
        else:
            source = "srlib loop"
        for workers in (0, 2):
            cfg = train_config(path, tmp / f"loader-{name}-{workers}", batches + 1,
                               workers=workers)
            run = build.run(cfg, device="cpu", progress=False)
            loader = train_mod.batches(run)  # the exact loader the training loop iterates
            start = time.perf_counter()
            it = iter(loader)
            next(it)
            first = time.perf_counter()
            for _ in range(batches):
                next(it)
            end = time.perf_counter()
            del it, loader, run
            rate = batches * cfg.dataset.params.batch_size / (end - first)
            ratio = rate / consumed[name]
            entry = {"config": name, "workers": workers, "patch": cfg.patch_size,
                     "batch": cfg.dataset.params.batch_size, "patches_per_s": rate,
                     "first_batch_s": first - start, "model_patches_per_s": consumed[name],
                     "model_rate_from": source, "ratio": ratio}
            results["loader"].append(entry)
            label = f"{name} config, HR {cfg.patch_size}, {workers} workers"
            print(f"  {label}: {rate:,.0f} patches/s (first batch {first - start:.2f} s); "
                  f"the model ({source}) takes {consumed[name]:.2f} patches/s -> "
                  f"{ratio:,.0f}x", flush=True)
            rows.append(("loader", label, f"{rate:,.0f} patches/s",
                         f"{consumed[name]:.3g} patches/s consumed", f"{ratio:,.0f}x",
                         f">= {TARGET_LOADER:.0f}x", ratio >= TARGET_LOADER))
    print("  (measured alone; with workers the loader shares the cores with the step, and "
          "with 0 workers its time is part of each iteration - see the train section)")


# --------------------------------------------------------------------------- infer

def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def infer_child(spec: dict) -> dict:
    """One inference case in a fresh process: time and peak RSS of this one call."""
    from srlib.inference import upscale
    from srlib.models import MSRResNet
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = MSRResNet().eval()  # default: 64 ch, 16 blocks, x4
    x = torch.rand(1, 3, spec["size"], spec["size"])
    with torch.inference_mode():
        model(torch.rand(1, 3, 32, 32))  # one-time kernel set-up, not timed
    reset = False
    with contextlib.suppress(OSError):  # "5" resets the peak (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    rss_before = _status_bytes("VmRSS")
    start = time.perf_counter()
    if spec["mode"] == "reference":
        with torch.inference_mode():
            y = model(x).clamp_(0, 1)
    else:
        y = upscale(model, x, scale=4, tile=spec.get("tile"), overlap=spec.get("overlap", 32))
    seconds = time.perf_counter() - start
    assert y.shape[-1] == 4 * spec["size"]
    return {"seconds": seconds, "peak_rss": _status_bytes("VmHWM"), "rss_before": rss_before,
            "peak_reset": reset, "output_mp": (4 * spec["size"]) ** 2 / 1e6}


def run_infer_child(spec: dict, timeout: float = 1800) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_infer-child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        raise RuntimeError(f"inference case {spec} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def section_infer(plan, args, results: dict, rows: list) -> None:
    print("\n## Inference: srlib upscale() vs plain model(x), default MSRResNet (64 ch/16 "
          "blocks), CPU fp32, one process per case", flush=True)
    if not Path("/proc/self/status").exists():
        print("  skipped: peak memory is read from /proc/self/status (Linux only)")
        return
    results["infer"] = []
    sizes = plan["infer_sizes"]
    if 1024 not in sizes:
        print("  1024x1024 LR input: skipped in --quick (several minutes on a small CPU); "
              "run without --quick")
    threads = torch.get_num_threads()
    ref_growth_256 = None
    for size in sizes:
        cases = [("plain model(x), untiled", {"mode": "reference"}),
                 ("srlib upscale, untiled", {"mode": "srlib", "tile": None}),
                 ("srlib upscale, tile 128 / overlap 32", {"mode": "srlib", "tile": 128})]
        if size > 256:  # the CLI default tile; the reference needs all activations at once
            cases = [("srlib upscale, tile 256 / overlap 32", {"mode": "srlib", "tile": 256}),
                     ("plain model(x), untiled", {"mode": "reference"})]
        ref, ref_note, ours = None, "not measured", []
        for label, spec in cases:
            spec = dict(spec, size=size, overlap=32, threads=threads)
            if spec["mode"] == "reference" and size > 256:
                # all activations at once: ~16x the 256x256 case (~13 GB for 64 ch/16 blocks)
                need = (ref_growth_256 or 0.85 * 2**30) * (size / 256) ** 2
                avail = _meminfo("MemAvailable")
                if not args.untiled_large or need * 1.5 > avail:
                    why = ("pass --untiled-large to run it" if not args.untiled_large else
                           f"only {avail / 2**30:.1f} GB available")
                    ref_note = f"not run: needs ~{need / 2**30:.0f} GB ({why})"
                    print(f"  LR {size}x{size}, {label}: not run, it needs about "
                          f"{need / 2**30:.1f} GB ({why})")
                    results["infer"].append({"size": size, "case": label, "skipped": True,
                                             "estimated_peak_growth_gb": need / 2**30})
                    continue
            try:
                got = run_infer_child(spec)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                print(f"  LR {size}x{size}, {label}: FAILED: {err}")
                continue
            mps = got["output_mp"] / got["seconds"]
            growth = got["peak_rss"] - got["rss_before"]
            entry = {"size": size, "case": label, **spec, **got, "mp_per_s": mps,
                     "peak_growth": growth}
            results["infer"].append(entry)
            if spec["mode"] == "reference":
                ref = entry
                if size == 256:
                    ref_growth_256 = growth
            else:
                ours.append(entry)
            print(f"  LR {size}x{size} -> {4 * size}x{4 * size}, {label}: {got['seconds']:.1f}"
                  f" s, {mps:.3f} output MP/s, peak RSS {got['peak_rss'] / 2**30:.2f} GB "
                  f"(+{growth / 2**30:.2f} GB during the call)", flush=True)
        cell = lambda e: f"{e['mp_per_s']:.3f} MP/s, peak {e['peak_rss'] / 2**30:.2f} GB"  # noqa: E731
        for entry in ours:
            ratio = "-"
            if ref is not None:
                ratio = (f"{entry['mp_per_s'] / ref['mp_per_s']:.2f}x speed, "
                         f"{entry['peak_rss'] / ref['peak_rss']:.2f}x peak")
            target, met = "-", None
            if entry.get("tile") is not None and size > entry["tile"]:
                target = f"peak < {TARGET_TILED_GB:.0f} GB"
                met = entry["peak_rss"] < TARGET_TILED_GB * 2**30
            rows.append(("infer", f"LR {size}² -> {4 * size}², {entry['case']}", cell(entry),
                         cell(ref) if ref is not None else ref_note, ratio, target, met))
    print("  (MP/s: output megapixels per second; peak RSS: the whole process, Python and "
          "torch included, read from /proc/self/status VmHWM)")


# --------------------------------------------------------------------------- cuda

CUDA_VARIANTS = [  # (label, config overrides)
    ("fp32, DataLoader workers", {"precision": "fp32", "channels_last": False}),
    ("bf16 + channels_last, DataLoader workers", {"precision": "bf16", "channels_last": True}),
    ("bf16 + channels_last, on-device data", {"precision": "bf16", "channels_last": True,
                                             "dataset.on_device": True}),
    ("bf16 + channels_last, on-device data, compile", {"precision": "bf16",
                                                      "channels_last": True,
                                                      "dataset.on_device": True,
                                                      "compile": True}),
    ("bf16 + channels_last, on-device data, compile reduce-overhead (CUDA graphs)",
     {"precision": "bf16", "channels_last": True, "dataset.on_device": True,
      "compile": "reduce-overhead"}),
]
TARGET_GPU_IT_S = 140  # full MSRResNet, batch 16, HR 128, one H100 (issue 5)


def srlib_rate(cfg: config_mod.Config, device: str) -> tuple[float, list[float]]:
    """srlib's own it/s over a whole ``solve()``: the rate logged for each window of
    ``log_every`` iterations (each window ends with one read-back of its losses, so the
    figure includes everything the device did). The first window (warm-up, cuDNN autotune,
    compilation) is dropped; returns the median of the rest and all of them."""
    train_mod.fit(build.run(cfg, device=device, progress=False))
    log = [json.loads(line) for line in (Path(cfg.logdir) / "metrics.jsonl").read_text()
           .splitlines()]
    rates = [r["it_per_s"] for r in log if r["kind"] == "train"]
    return median(rates[1:]), rates


def section_cuda(plan, tmp: Path, results: dict, rows: list) -> None:
    print("\n## CUDA: full MSRResNet (64 ch/16 blocks, batch 16, HR 128, EMA), T91 data",
          flush=True)
    if not torch.cuda.is_available():
        print("  skipped: no CUDA GPU visible (torch.cuda.is_available() is False)")
        results["cuda"] = {"skipped": "no CUDA GPU"}
        return
    props = torch.cuda.get_device_properties(0)
    print(f"  GPU: {props.name}, {props.total_memory / 2**30:.0f} GB, "
          f"compute capability {props.major}.{props.minor}, CUDA {torch.version.cuda}, "
          f"torch {torch.__version__}")
    print("  srlib: solve() with its data path, EMA, scheduler and logging, rate as logged; "
          "reference: reference_loop.py on pre-made GPU tensors (fused Adam, losses read back "
          "once at the end), same precision, layout and compile setting. A ratio near 1 "
          "means the data path keeps the GPU as busy as pre-made tensors do.", flush=True)
    out = {"gpu": props.name, "train": [], "infer": []}
    results["cuda"] = out
    window = plan["cuda_steps"]
    workers = min(8, os.cpu_count() or 1)
    for label, overrides in CUDA_VARIANTS:
        if overrides["precision"] == "bf16" and not torch.cuda.is_bf16_supported():
            print(f"  {label}: skipped, bf16 not supported on this GPU")
            continue
        try:
            cfg = train_config(FULL_CONFIG, tmp / f"cuda-{len(out['train'])}", 4 * window,
                               device="cuda", workers=workers, log_every=window, **overrides)
            torch.cuda.reset_peak_memory_stats()
            ours, windows = srlib_rate(cfg, "cuda")
            peak = torch.cuda.max_memory_allocated() / 2**30
            ref = ReferenceTrainer(cfg, "cuda", cfg.precision, cfg.channels_last)
            ref.seconds_per_step(window)  # warm-up (and compilation)
            t_ref = median([ref.seconds_per_step(window) for _ in range(3)])
            del ref
        except Exception as err:  # noqa: BLE001 - report and go on with the next variant
            print(f"  {label}: FAILED: {type(err).__name__}: {err}", flush=True)
            continue
        batch = cfg.dataset.params.batch_size
        ratio = (1 / ours) / t_ref
        entry = {"label": label, "srlib_it_per_s": ours, "srlib_windows_it_per_s": windows,
                 "reference_it_per_s": 1 / t_ref, "ratio_time": ratio,
                 "srlib_img_per_s": batch * ours, "peak_gpu_gb": peak,
                 "workers": 0 if cfg.dataset.on_device else workers}
        out["train"].append(entry)
        print(f"  {label}: srlib {ours:.1f} it/s ({batch * ours:,.0f} img/s), reference "
              f"{1 / t_ref:.1f} it/s; srlib/reference time {ratio:.3f}; peak GPU memory "
              f"{peak:.1f} GB; windows {', '.join(f'{w:.0f}' for w in windows)} it/s",
              flush=True)
        rows.append(("cuda train", label, f"{ours:.1f} it/s, {batch * ours:,.0f} img/s",
                     f"{1 / t_ref:.1f} it/s", f"{ratio:.3f}x time",
                     f">= {TARGET_GPU_IT_S} it/s (H100)", ours >= TARGET_GPU_IT_S))
    try:
        _cuda_infer(out, rows)
    except Exception as err:  # noqa: BLE001
        print(f"  inference: FAILED: {type(err).__name__}: {err}")


def _cuda_infer(out: dict, rows: list) -> None:
    from srlib.inference import upscale
    from srlib.models import MSRResNet
    torch.manual_seed(0)
    model = MSRResNet().cuda().eval()
    size = CUDA_INFER_LR
    x = torch.rand(1, 3, size, size)
    cases = [("fp32, untiled", "fp32", None), ("fp32, tile 256 / overlap 32", "fp32", 256),
             ("fp16, untiled", "fp16", None), ("fp16, tile 256 / overlap 32", "fp16", 256)]
    reference = None
    for label, precision, tile in cases:
        upscale(model, x[:, :, :64, :64], precision=precision)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        try:
            start = time.perf_counter()
            # returns on the CPU, so the time includes the device work and the copy back
            y = upscale(model, x, tile=tile, overlap=32, precision=precision)
            seconds = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            print(f"  LR {size}² -> {4 * size}², {label}: out of GPU memory")
            torch.cuda.empty_cache()
            continue
        if reference is None:
            reference = y
        diff = (y - reference).abs().max().item() * 255
        peak = torch.cuda.max_memory_allocated() / 2**30
        mps = (4 * size) ** 2 / 1e6 / seconds
        out["infer"].append({"label": label, "mp_per_s": mps, "peak_gpu_gb": peak,
                             "max_diff_levels_vs_fp32_untiled": diff})
        print(f"  LR {size}² -> {4 * size}², {label}: {mps:.1f} output MP/s, peak GPU memory "
              f"{peak:.2f} GB, max difference from fp32 untiled {diff:.2f} grey levels",
              flush=True)
        rows.append(("cuda infer", f"LR {size}² -> {4 * size}², {label}",
                     f"{mps:.1f} MP/s, peak {peak:.2f} GB (GPU)", "-",
                     f"max diff {diff:.2f} levels", "-", None))


# --------------------------------------------------------------------------- report

def markdown_table(rows: list) -> str:
    head = ("| Section | Case | srlib | Plain PyTorch reference | Ratio | Target | Met |\n"
            "|---|---|---|---|---|---|---|")
    verdict = {True: "yes", False: "**no**", None: ""}
    return "\n".join([head] + [f"| {s} | {c} | {a} | {b} | {r} | {t} | {verdict[m]} |"
                               for s, c, a, b, r, t, m in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, no 1024x1024 inference (about 3 min on 2 cores)")
    parser.add_argument("--section", default="all",
                        choices=["train", "loader", "infer", "cuda", "all"])
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--untiled-large", action="store_true",
                        help="also run the untiled reference on the 1024x1024 LR input "
                             "(about 14 GB of RAM)")
    parser.add_argument("--_infer-child", dest="infer_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.infer_child:
        print(json.dumps(infer_child(json.loads(args.infer_child))))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = PLANS["quick" if args.quick else "default"]
    results = {"mode": "quick" if args.quick else "default", "machine": machine()}
    print(f"# srlib benchmark ({results['mode']})\n\nMachine: "
          f"{describe_machine(results['machine'])}", flush=True)
    load, cores = results["machine"]["load_average_start"], results["machine"]["usable_cores"]
    if load and cores and load[0] > 0.75 * cores and torch.get_num_threads() > 1:
        print(f"\nNOTE: the machine is busy (load {load[0]:.1f} on {cores} cores). Multi-threaded "
              "steps then stall whenever another job takes a core, and timings swing by up "
              "to 2x; --threads 1 gives steadier ratios.", flush=True)
    rows: list = []
    started = time.perf_counter()
    wanted = {"train", "loader", "infer", "cuda"} if args.section == "all" else {args.section}
    with tempfile.TemporaryDirectory(prefix="srlib-bench-") as tmp:
        tmp = Path(tmp)
        if "train" in wanted:
            section_train(plan, tmp, results, rows)
        if "loader" in wanted:
            section_loader(plan, tmp, results, rows)
        if "infer" in wanted:
            section_infer(plan, args, results, rows)
        if "cuda" in wanted:
            section_cuda(plan, tmp, results, rows)
    m = results["machine"]
    m["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - started
    results["table"] = markdown_table(rows)
    print(f"\n## Summary ({results['mode']}, {results['seconds'] / 60:.1f} min)\n")
    print(f"Machine: {describe_machine(m)}\n")
    print(results["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

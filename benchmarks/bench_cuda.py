"""bench.py's cuda section (a GPU only): the full config's it/s as srlib's own log reports it over
a whole ``fit``, in five variants, each beside the plain loop on pre-made GPU tensors; then
fp32/fp16 inference of a 1024x1024 LR image, untiled and tiled."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import FULL_CONFIG, Row, logged_rates, median, train_config
from reference_loop import ReferenceTrainer

from srlib.train import fit, make_run

VARIANTS = [  # (label, config overrides)
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
TARGET_IT_S = 140  # full MSRResNet, batch 16, HR 128, one H100 (issue 5)
INFER_LR = 1024    # LR side of the inference cases (output 4x that)


@dataclass
class CudaTrainResult:
    label: str
    srlib_it_per_s: float                # median of the logged windows, the first left out
    srlib_windows_it_per_s: list[float]
    reference_it_per_s: float
    srlib_img_per_s: float
    peak_gpu_gb: float
    workers: int

    @property
    def ratio_time(self) -> float:
        return self.reference_it_per_s / self.srlib_it_per_s

    def summary(self) -> dict:
        return {**asdict(self), "ratio_time": self.ratio_time}


@dataclass
class CudaInferResult:
    label: str
    mp_per_s: float
    peak_gpu_gb: float
    max_diff_levels_vs_fp32_untiled: int

    def summary(self) -> dict:
        return asdict(self)


def train_variant(label: str, overrides: dict, window: int, logdir: Path) -> CudaTrainResult:
    workers = min(8, os.cpu_count() or 1)
    cfg = train_config(FULL_CONFIG, logdir, 4 * window,
                       device="cuda", workers=workers, log_every=window, **overrides)
    torch.cuda.reset_peak_memory_stats()
    # each window ends with one read-back of its losses: the rate includes all device work;
    # the first window (warm-up, cuDNN autotune, compilation) is left out
    fit(make_run(cfg, device="cuda", progress=False))
    windows = logged_rates(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**30
    ref = ReferenceTrainer(cfg, "cuda", cfg.precision, cfg.channels_last)
    ref.seconds_per_step(window)  # warm-up (and compilation)
    t_ref = median([ref.seconds_per_step(window) for _ in range(3)])
    ours = median(windows[1:])
    return CudaTrainResult(label, ours, windows, 1 / t_ref, cfg.dataset.params.batch_size * ours,
                           peak, 0 if cfg.dataset.on_device else workers)


def infer_cases() -> list[CudaInferResult]:
    import numpy as np

    from srlib.data.io import to_float_tensor, to_uint8
    from srlib.inference import upscale, upscale_image
    from srlib.models import MSRResNet
    torch.manual_seed(0)
    model = MSRResNet().cuda().eval()
    image = np.random.default_rng(0).integers(0, 256, (INFER_LR, INFER_LR, 3), np.uint8)
    x = to_float_tensor(image).unsqueeze(0)
    out, reference, side = [], None, 4 * INFER_LR
    for label, precision, tile in [("fp32, untiled", "fp32", None),
                                   ("fp32, tile 256 / overlap 32", "fp32", 256),
                                   ("fp16, untiled", "fp16", None),
                                   ("fp16, tile 256 / overlap 32", "fp16", 256)]:
        upscale(model, x[:, :, :64, :64], precision)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        try:
            start = time.perf_counter()
            # both return on the CPU: the time includes the device work and the copy back
            y = (to_uint8(upscale(model, x, precision)[0]) if tile is None
                 else upscale_image(model, image, tile, 32, precision))
            seconds = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            print(f"  LR {INFER_LR}² -> {side}², {label}: out of GPU memory")
            torch.cuda.empty_cache()
            continue
        reference = y if reference is None else reference
        diff = int(np.abs(y.astype(np.int16) - reference).max())
        out.append(CudaInferResult(label, side**2 / 1e6 / seconds,
                                   torch.cuda.max_memory_allocated() / 2**30, diff))
    return out


def section_cuda(plan, tmp: Path) -> tuple[dict, list[Row]]:
    print("\n## CUDA: full MSRResNet (64 ch/16 blocks, batch 16, HR 128, EMA), T91 data",
          flush=True)
    if not torch.cuda.is_available():
        print("  skipped: no CUDA GPU visible (torch.cuda.is_available() is False)")
        return {"skipped": "no CUDA GPU"}, []
    props = torch.cuda.get_device_properties(0)
    print(f"  GPU: {props.name}, {props.total_memory / 2**30:.0f} GB, compute capability "
          f"{props.major}.{props.minor}, CUDA {torch.version.cuda}, torch {torch.__version__}")
    print("  srlib: fit() with its data path, EMA, scheduler and logging, rate as logged; "
          "reference: reference_loop.py on pre-made GPU tensors (fused Adam, losses read back "
          "once at the end), same precision, layout and compile setting. A ratio near 1 "
          "means the data path keeps the GPU as busy as pre-made tensors do.", flush=True)
    train, infer, rows = [], [], []
    for i, (label, overrides) in enumerate(VARIANTS):
        if overrides["precision"] == "bf16" and not torch.cuda.is_bf16_supported():
            print(f"  {label}: skipped, bf16 not supported on this GPU")
            continue
        try:
            res = train_variant(label, overrides, plan.cuda_steps, tmp / f"cuda-{i}")
        except Exception as err:  # noqa: BLE001 - report and go on with the next variant
            print(f"  {label}: FAILED: {type(err).__name__}: {err}", flush=True)
            continue
        train.append(res)
        print(f"  {label}: srlib {res.srlib_it_per_s:.1f} it/s ({res.srlib_img_per_s:,.0f} "
              f"img/s), reference {res.reference_it_per_s:.1f} it/s; srlib/reference time "
              f"{res.ratio_time:.3f}; peak GPU memory {res.peak_gpu_gb:.1f} GB; windows "
              f"{', '.join(f'{w:.0f}' for w in res.srlib_windows_it_per_s)} it/s", flush=True)
        rows.append(Row("cuda train", label, f"{res.srlib_it_per_s:.1f} it/s, "
                        f"{res.srlib_img_per_s:,.0f} img/s", f"{res.reference_it_per_s:.1f} it/s",
                        f"{res.ratio_time:.3f}x time", f">= {TARGET_IT_S} it/s (H100)",
                        res.srlib_it_per_s >= TARGET_IT_S))
    try:
        infer = infer_cases()
    except Exception as err:  # noqa: BLE001
        print(f"  inference: FAILED: {type(err).__name__}: {err}")
    for r in infer:
        case = f"LR {INFER_LR}² -> {4 * INFER_LR}², {r.label}"
        print(f"  {case}: {r.mp_per_s:.1f} output MP/s, peak GPU memory {r.peak_gpu_gb:.2f} GB,"
              f" max difference from fp32 untiled {r.max_diff_levels_vs_fp32_untiled} grey "
              "levels", flush=True)
        rows.append(Row("cuda infer", case, f"{r.mp_per_s:.1f} MP/s, peak {r.peak_gpu_gb:.2f} "
                        "GB (GPU)", "-", f"max diff {r.max_diff_levels_vs_fp32_untiled} levels"))
    return ({"gpu": props.name, "train": [r.summary() for r in train],
             "infer": [r.summary() for r in infer]}, rows)

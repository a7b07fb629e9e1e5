"""bench.py's infer section: output MP/s and peak RSS of ``srlib.inference`` (default MSRResNet,
64 ch / 16 blocks, CPU fp32) against a plain ``model(x)``, each case in a fresh process (this
file run as a script) so that its peak is its own. Untiled is ``upscale`` (float in, float
out); tiled is ``upscale_image`` (uint8 in, each tile written into a uint8 output), what
``srlib upscale`` runs between reading and writing the file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import ROOT, Row, clear_peak, proc_bytes

TARGET_TILED_GB = 2.0  # tiled x4 of a 1024x1024 LR image under 2 GB on CPU


@dataclass
class InferResult:
    size: int                # LR side; the output is 4x
    case: str
    mode: str                # "reference" (model(x)), "untiled" (upscale), "tiled"
    tile: int | None
    overlap: int
    seconds: float
    peak_rss: int            # bytes, the whole process (VmHWM)
    rss_before: int          # bytes just before the call (Python, torch, model, input)
    peak_reset: bool         # VmHWM was reset before the call (else: since the start)

    @property
    def mp_per_s(self) -> float:
        return (4 * self.size) ** 2 / 1e6 / self.seconds

    @property
    def peak_growth(self) -> int:
        return self.peak_rss - self.rss_before

    def summary(self) -> dict:
        return {**asdict(self), "mp_per_s": self.mp_per_s, "peak_growth": self.peak_growth}


def infer_child(spec: dict) -> dict:
    """One case, in this process: time and peak RSS of this one call."""
    import numpy as np
    import torch

    from srlib.data.io import to_float_tensor
    from srlib.inference import upscale, upscale_image
    from srlib.models import MSRResNet
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = MSRResNet().eval()  # default: 64 ch, 16 blocks, x4
    size, mode = spec["size"], spec["mode"]
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
    x = to_float_tensor(image).unsqueeze(0)  # (1, 3, size, size)
    with torch.inference_mode():
        model(torch.rand(1, 3, 32, 32))  # one-time kernel set-up, not timed
    reset = clear_peak()
    before = proc_bytes("VmRSS")
    start = time.perf_counter()
    if mode == "reference":
        with torch.inference_mode():
            y = model(x).clamp_(0, 1)
    elif mode == "untiled":
        y = upscale(model, x, "fp32")
    else:
        y = upscale_image(model, image, spec["tile"], spec["overlap"], "fp32")
    seconds = time.perf_counter() - start
    assert max(y.shape) == 4 * size
    return {"seconds": seconds, "peak_rss": proc_bytes("VmHWM"), "rss_before": before,
            "peak_reset": reset}


def run_case(size: int, case: str, mode: str, tile: int | None, threads: int,
             timeout: float = 1800) -> InferResult:
    spec = {"size": size, "mode": mode, "tile": tile, "overlap": 32, "threads": threads}
    proc = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        raise RuntimeError(f"inference case {spec} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return InferResult(size, case, mode, tile, 32, **got)


def _cell(r: InferResult) -> str:
    return f"{r.mp_per_s:.3f} MP/s, peak {r.peak_rss / 2**30:.2f} GB"


def section_infer(plan, untiled_large: bool, threads: int) -> tuple[list, list[Row]]:
    print("\n## Inference: srlib upscale()/upscale_image() vs plain model(x), default "
          "MSRResNet (64 ch/16 blocks), CPU fp32, one process per case", flush=True)
    if not Path("/proc/self/status").exists():
        print("  skipped: peak memory is read from /proc/self/status (Linux only)")
        return [], []
    if 1024 not in plan.infer_sizes:
        print("  1024x1024 LR input: skipped in --quick (several minutes on a small CPU); "
              "run without --quick")
    results, rows, ref_growth_256 = [], [], None
    for size in plan.infer_sizes:
        cases = [("plain model(x), untiled", "reference", None),
                 ("srlib upscale, untiled", "untiled", None),
                 ("srlib upscale_image, tile 128 / overlap 32", "tiled", 128)]
        if size > 256:  # the CLI default tile; the reference needs all activations at once
            cases = [("srlib upscale_image, tile 256 / overlap 32", "tiled", 256),
                     ("plain model(x), untiled", "reference", None)]
        ref, ref_note, ours = None, "not measured", []
        for case, mode, tile in cases:
            if mode == "reference" and size > 256:
                # all activations at once: ~16x the 256x256 case (~13 GB for 64 ch/16 blocks)
                need = (ref_growth_256 or 0.85 * 2**30) * (size / 256) ** 2
                avail = proc_bytes("MemAvailable", "/proc/meminfo")
                if not untiled_large or need * 1.5 > avail:
                    why = ("pass --untiled-large to run it" if not untiled_large else
                           f"only {avail / 2**30:.1f} GB available")
                    ref_note = f"not run: needs ~{need / 2**30:.0f} GB ({why})"
                    print(f"  LR {size}x{size}, {case}: not run, it needs about "
                          f"{need / 2**30:.1f} GB ({why})")
                    continue
            try:
                res = run_case(size, case, mode, tile, threads)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                print(f"  LR {size}x{size}, {case}: FAILED: {err}")
                continue
            results.append(res)
            if mode == "reference":
                ref = res
                ref_growth_256 = res.peak_growth if size == 256 else ref_growth_256
            else:
                ours.append(res)
            print(f"  LR {size}x{size} -> {4 * size}x{4 * size}, {case}: {res.seconds:.1f} s, "
                  f"{res.mp_per_s:.3f} output MP/s, peak RSS {res.peak_rss / 2**30:.2f} GB "
                  f"(+{res.peak_growth / 2**30:.2f} GB during the call)", flush=True)
        for res in ours:
            ratio = "-" if ref is None else (f"{res.mp_per_s / ref.mp_per_s:.2f}x speed, "
                                             f"{res.peak_rss / ref.peak_rss:.2f}x peak")
            tiled = res.tile is not None and size > res.tile
            rows.append(Row("infer", f"LR {size}² -> {4 * size}², {res.case}", _cell(res),
                            _cell(ref) if ref is not None else ref_note, ratio,
                            f"peak < {TARGET_TILED_GB:.0f} GB" if tiled else "-",
                            res.peak_rss < TARGET_TILED_GB * 2**30 if tiled else None))
    print("  (MP/s: output megapixels per second; peak RSS: the whole process, Python and "
          "torch included, read from /proc/self/status VmHWM)")
    return results, rows


if __name__ == "__main__":  # one case: bench_infer.py '{"size": 256, "mode": ...}'
    print(json.dumps(infer_child(json.loads(sys.argv[1]))))

#!/usr/bin/env python
"""Peak memory of ``srlib upscale`` on a large image, and where it goes.

    python benchmarks/upscale_memory.py --checkpoint runs/x/last.pt [--size 2000] [--tile 256]
    python benchmarks/upscale_memory.py --working-set --checkpoint runs/x/last.pt --tile 128,256
    python benchmarks/upscale_memory.py --save-only [--size 2000]

The first form writes a size x size RGB PNG (a T91 image enlarged), then runs
``python -m srlib upscale`` on it under GNU time (``/usr/bin/time -v``: the peak RSS is its
"Maximum resident set size") while sampling the process's RSS every 0.2 s from
/proc/PID/status, so the peak can be placed: before the tiles (Python, torch, the model, the
input), while tiling (the uint8 output grows as tiles land, plus one tile's working set), or
while saving (from the moment the temporary output file appears: PIL's copy of the array,
which for RGB is 4 bytes per pixel, and the encoder).

``--working-set`` measures the middle part alone: for each ``--tile`` (comma-separated),
the rise of the peak during ``upscale`` of one tile x tile LR tile, in this process, after the
model is loaded (the baseline the CLI has too, printed), with the checkpoint's model.

``--save-only`` measures the last part alone, without a model: ``srlib.data.io.save_image``
of a random uint8 output of (4 size)^2 pixels, the rise of the peak over the array.

Not a test; GNU time must be installed (Debian: ``apt-get install time``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, clear_peak, proc_bytes  # noqa: E402

GNU_TIME = "/usr/bin/time"


def make_input(path: Path, size: int) -> None:
    """A size x size RGB image with real structure: a T91 image, enlarged by bicubic."""
    from PIL import Image
    with Image.open(ROOT / "data/T91/t1.png") as im:
        im.convert("RGB").resize((size, size), Image.BICUBIC).save(path)


def sample_rss(pid: int, tmpdir: Path, out: Path, samples: list, done: threading.Event):
    """(seconds, RSS bytes, saving?) every 0.2 s until ``done``; saving once a file other
    than the output appears in its folder (save_image writes a temporary file first)."""
    start = time.monotonic()
    while not done.is_set():
        rss = proc_bytes("VmRSS", f"/proc/{pid}/status")
        saving = any(p != out for p in tmpdir.iterdir())
        if rss:
            samples.append((time.monotonic() - start, rss, saving))
        time.sleep(0.2)


def measure_cli(checkpoint: str, size: int, tile: int | None, overlap: int,
                workdir: Path) -> dict:
    src, outdir = workdir / f"in_{size}.png", workdir / "out"
    if not src.exists():
        make_input(src, size)
    outdir.mkdir(exist_ok=True)
    dst = outdir / "sr.png"
    dst.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "srlib", "upscale", str(src), str(dst), "--checkpoint",
           checkpoint, "--device", "cpu", "--overlap", str(overlap)]
    if tile:
        cmd += ["--tile", str(tile)]
    started = time.monotonic()
    proc = subprocess.Popen([GNU_TIME, "-v"] + cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    child = None
    for _ in range(100):  # GNU time forks the command: find its pid
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        text = kids.read_text().split() if kids.exists() else []
        if text:
            child = int(text[0])
            break
        time.sleep(0.05)
    samples, done = [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(child, outdir, dst, samples, done))
    if child:
        sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    if child:
        sampler.join()
    seconds = time.monotonic() - started
    fields = dict(line.strip().rsplit(": ", 1) for line in stderr.splitlines()
                  if line.startswith("\t") and ": " in line)
    peak = int(fields.get("Maximum resident set size (kbytes)", 0)) * 1024
    tiling = [rss for _, rss, saving in samples if not saving]
    saving = [rss for _, rss, s in samples if s]
    return {"size": size, "tile": tile, "overlap": overlap, "returncode": proc.returncode,
            "peak_rss": peak, "seconds": seconds,
            "sampled_peak_before_saving": max(tiling, default=0),
            "sampled_peak_while_saving": max(saving, default=0),
            "output_bytes": 3 * (4 * size) ** 2,
            "stdout": stdout.strip()[-500:],
            "stderr": [line for line in stderr.splitlines() if not line.startswith("\t")][:4]}


def measure_save(size: int, workdir: Path) -> dict:
    """save_image of a (4 size)^2 RGB uint8 array: how far the peak rises above the array."""
    import numpy as np

    from srlib.data.io import save_image
    side = 4 * size
    arr = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    arr[:] = np.sort(arr, axis=1)  # less noise: an encode time closer to a real image's
    before = proc_bytes("VmRSS")
    clear_peak()
    start = time.perf_counter()
    save_image(workdir / "save_only.png", arr)
    return {"side": side, "array_bytes": arr.nbytes, "rss_with_array": before,
            "peak_rise_while_saving": proc_bytes("VmHWM") - before,
            "seconds": time.perf_counter() - start}


def measure_working_set(checkpoint: str, tiles: list[int]) -> dict:
    """The baseline RSS (Python, torch, srlib, the model) and, per tile size, how far the
    peak rises over it while ``upscale`` computes one tile (the float result included)."""
    import torch

    from srlib.inference import load_generator, upscale
    start = proc_bytes("VmRSS")
    model = load_generator(checkpoint, "cpu")
    with torch.inference_mode():
        model(torch.rand(1, 3, 16, 16))  # kernels set up, as after the CLI's first tile
    out = {"rss_after_imports": start, "rss_with_model": proc_bytes("VmRSS"), "tiles": {}}
    for tile in tiles:
        x = torch.rand(1, 3, tile, tile)
        before = proc_bytes("VmRSS")
        clear_peak()
        started = time.perf_counter()
        upscale(model, x, "fp32")
        out["tiles"][tile] = {"peak_rise": proc_bytes("VmHWM") - before,
                              "seconds": time.perf_counter() - started}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--size", type=int, default=2000, help="LR side (output: 4x)")
    parser.add_argument("--tile", default="256", help="0: untiled; with --working-set, "
                        "several: 128,192,256")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--save-only", action="store_true")
    parser.add_argument("--working-set", action="store_true")
    parser.add_argument("--workdir", help="keep the input here (default: a temporary folder)")
    args = parser.parse_args()
    if not args.save_only and not args.checkpoint:
        parser.error("--checkpoint is needed (or --save-only)")
    if not (args.save_only or args.working_set or Path(GNU_TIME).exists()):
        sys.exit(f"{GNU_TIME} not found: install GNU time (apt-get install time)")
    with tempfile.TemporaryDirectory(prefix="srlib-upscale-mem-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.save_only:
            result = measure_save(args.size, workdir)
        elif args.working_set:
            import srlib.cli  # noqa: F401 - what the CLI has imported by then
            result = measure_working_set(args.checkpoint, [int(t) for t in args.tile.split(",")])
        else:
            result = measure_cli(args.checkpoint, args.size, int(args.tile) or None,
                                 args.overlap, workdir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

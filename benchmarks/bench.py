#!/usr/bin/env python
"""srlib benchmarks: each srlib figure beside a plain PyTorch reference measured in the same run.

    python benchmarks/bench.py [--quick] [--section train|loader|infer|cuda|all] [--json out.json]

Sections (see benchmarks/README.md for what the figures mean), one module each:

* train  - bench_train.py: srlib's training loop (``srlib.train.fit``: data, step, EMA,
           schedule, checks, logs) against the plain loop of reference_loop.py on pre-made
           tensors; target: srlib's time per iteration at most 1.05x the reference's.
* loader - bench_loader.py: patches/s of the batches ``fit`` iterates (``make_batches`` over
           PairedPatchDataset on T91) with 0 and 2 workers against the patches/s the model
           consumes; target: at least 5x.
* infer  - bench_infer.py: output megapixels/s and peak memory of ``srlib.inference`` (default
           MSRResNet, 64 ch / 16 blocks), tiled and untiled, against a plain ``model(x)``;
           each case runs in its own process so its peak RSS is its own. Target: tiled x4 of a
           1024x1024 image under 2 GB on CPU.
* cuda   - bench_cuda.py, only with a GPU: the full model's it/s in fp32, bf16 +
           channels_last, with the on-device data path and with torch.compile, each beside
           the plain loop on pre-made GPU tensors (a ratio near 1: the data path keeps up);
           fp32/fp16 inference.

Not a test: figures depend on the machine and on what else runs on it, which is why every
ratio compares two things measured in the same run, interleaved.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the section modules beside it

import torch  # noqa: E402
from common import describe_machine, finished, machine, markdown_table  # noqa: E402


class Plan(NamedTuple):
    train_rounds: dict       # config -> (rounds, measured iterations per round); each round
    interleaved_pairs: dict  # also runs one warm-up iteration, left out
    loader_batches: int
    infer_sizes: list
    cuda_steps: int          # iterations per logged window on the GPU


PLANS = {
    "quick": Plan({"quick": (2, 4), "full": (1, 2)}, {"quick": 8, "full": 3}, 30, [256], 50),
    "default": Plan({"quick": (4, 6), "full": (3, 3)}, {"quick": 16, "full": 4}, 100,
                    [256, 1024], 200),
}


def run_sections(wanted: set, plan: Plan, args, results: dict) -> list:
    rows = []
    with tempfile.TemporaryDirectory(prefix="srlib-bench-") as tmp:
        tmp = Path(tmp)
        consumed = {}  # the model's images/s per config, for the loader's ratio
        if "train" in wanted:
            from bench_train import section_train
            train, got = section_train(plan, tmp)
            results["train"], rows = [r.summary() for r in train], rows + got
            consumed = {r.config: r.summary()["srlib_img_per_s"] for r in train}
        if "loader" in wanted:
            from bench_loader import section_loader
            loader, got = section_loader(plan, tmp, consumed)
            results["loader"], rows = [r.summary() for r in loader], rows + got
        if "infer" in wanted:
            from bench_infer import section_infer
            infer, got = section_infer(plan, args.untiled_large, torch.get_num_threads())
            results["infer"], rows = [r.summary() for r in infer], rows + got
        if "cuda" in wanted:
            from bench_cuda import section_cuda
            results["cuda"], got = section_cuda(plan, tmp)
            rows += got
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, no 1024x1024 inference (about 2 min on 2 cores)")
    parser.add_argument("--section", default="all",
                        choices=["train", "loader", "infer", "cuda", "all"])
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--untiled-large", action="store_true",
                        help="also run the untiled reference on the 1024x1024 LR input "
                             "(about 14 GB of RAM)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "default"
    m = machine()
    print(f"# srlib benchmark ({mode})\n\nMachine: {describe_machine(m)}", flush=True)
    load = m.load_average_start
    if load and load[0] > 0.75 * m.usable_cores and torch.get_num_threads() > 1:
        print(f"\nNOTE: the machine is busy (load {load[0]:.1f} on {m.usable_cores} cores). "
              "Multi-threaded steps then stall whenever another job takes a core, and timings "
              "swing by up to 2x; --threads 1 gives steadier ratios.", flush=True)
    started = time.perf_counter()
    wanted = {"train", "loader", "infer", "cuda"} if args.section == "all" else {args.section}
    results = {"mode": mode}
    rows = run_sections(wanted, PLANS[mode], args, results)
    m = finished(m)
    results.update(machine=m._asdict(), seconds=time.perf_counter() - started,
                   table=markdown_table(rows))
    print(f"\n## Summary ({mode}, {results['seconds'] / 60:.1f} min)\n")
    print(f"Machine: {describe_machine(m)}\n")
    print(results["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

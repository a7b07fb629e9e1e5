#!/usr/bin/env python
"""Where the host time of srlib's training loop goes: cProfile over the training loop.

    python benchmarks/profile_step.py [--device cuda] [--iterations 400] [--set KEY=VALUE ...]

On a fast GPU a small model is limited by the host issuing kernels, not by the GPU; this
lists the Python functions that cost the most per iteration (full MSRResNet config on T91).
"""
import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srlib import config as config_mod  # noqa: E402
from srlib.train import fit, make_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    overrides = [f"logdir={root}/runs/profile", f"iterations={args.iterations}",
                 "max_minutes=null", "validation=null", "save_every=1000000000",
                 "dataset.name=t91", f"dataset.root={root}/data/T91", f"device={args.device}",
                 "precision=bf16", "channels_last=true", "dataset.on_device=true",
                 f"log_every={args.iterations}"] + args.set
    cfg = config_mod.load(root / "configs/msrresnet_x4.json", overrides)
    run = make_run(cfg, progress=False)
    profile = cProfile.Profile()
    profile.enable()
    summary = fit(run)
    profile.disable()
    print(f"{summary['iterations']} iterations in {summary['minutes'] * 60:.2f} s "
          f"({summary['iterations'] / (summary['minutes'] * 60):.1f} it/s, warm-up included)")
    stats = pstats.Stats(profile).sort_stats("tottime")
    stats.print_stats(args.top)


if __name__ == "__main__":
    main()

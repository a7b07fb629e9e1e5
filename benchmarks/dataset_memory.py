#!/usr/bin/env python
"""Memory per rank of the training set under torchrun: the shared memory-mapped cache
(``dataset.cache``) against one private decoded copy per rank (what every rank held before).

    python benchmarks/dataset_memory.py [--images 150] [--size 480] [--ranks 2]

It writes a prepared-layout set of random images (HR/ and LR_x4/) to a temporary folder, then
runs itself under ``torchrun --nproc_per_node N`` with the gloo backend. Each rank builds the
set through ``srlib.build.train_dataset`` (rank 0 decodes, the others wait, then all map the
file), reads every image, and prints its memory from /proc/self/smaps_rollup:

* RSS counts every page the process touches, the shared file pages included;
* PSS splits each shared page between the processes that map it;
* private is what this process alone holds (a page of the file that no other process has
  touched yet counts as private, hence the barrier before measuring).

Then each rank copies the set into its own memory, as the old in-RAM cache did, and prints again.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import proc_fields
from PIL import Image

from srlib import build
from srlib import config as config_mod
from srlib.distributed import DistInfo

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quick" / "msrresnet.json"


def memory_mb() -> dict:
    """RSS, PSS and private memory of this process, in MB."""
    fields = {k: v / 2**20 for k, v in proc_fields("/proc/self/smaps_rollup").items()}
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"]}


def make_set(root: Path, images: int, size: int) -> float:
    """Random HR images and their 4x smaller LR; returns the decoded size in MB."""
    rng = np.random.default_rng(0)
    (root / "HR").mkdir(parents=True)
    (root / "LR_x4").mkdir()
    for i in range(images):
        hr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(hr).save(root / "HR" / f"{i:04d}.png", compress_level=0)
        Image.fromarray(hr[::4, ::4]).save(root / "LR_x4" / f"{i:04d}.png", compress_level=0)
    return images * 3 * (size * size + (size // 4) ** 2) / 2**20


def rank_main(root: str) -> None:
    dist = DistInfo.from_environment()
    cfg = config_mod.load(CONFIG, [f"dataset.root={root}", "dataset.name=folder"])
    before = memory_mb()
    data = build.train_dataset(cfg, dist)
    checksum = sum(int(hr[::97, ::89].sum()) + int(lr.sum()) for hr, lr in
                   (data.pair(k) for k in range(len(data.paths))))  # touch every page
    dist.barrier()  # a page counts as shared only once every rank has touched it
    shared = memory_mb()
    copies = [(np.array(hr), np.array(lr)) for hr, lr in
              (data.pair(k) for k in range(len(data.paths)))]
    private = memory_mb()
    assert checksum and len(copies) == len(data.paths)
    for rank in range(dist.world_size):  # one rank at a time, so the lines do not interleave
        dist.barrier()
        if rank != dist.rank:
            continue
        for name, m in (("start", before), ("shared cache", shared), ("+ private copy", private)):
            print(f"rank {rank}  {name:15s} RSS {m['rss']:7.1f} MB  PSS {m['pss']:7.1f} MB  "
                  f"private {m['private']:7.1f} MB", flush=True)
    dist.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="srlib-memory-") as tmp:
        size_mb = make_set(Path(tmp), args.images, args.size)
        print(f"{args.images} images of {args.size}x{args.size} (+ LR): {size_mb:.1f} MB decoded; "
              f"{args.ranks} gloo ranks", flush=True)
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                        str(args.ranks), __file__, "--rank-of", tmp], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-of"]:
        rank_main(sys.argv[2])
    else:
        main()

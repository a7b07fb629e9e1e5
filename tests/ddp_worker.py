"""torchrun target for test_ddp.py (not collected by pytest; not part of srlib).

Runs ``srlib train ...`` through the real command line (``srlib.cli.main``) and, when training
returns, has every rank write down the state it ended with, so the test can check that the
ranks agree - rank 0's checkpoint alone cannot show that.

    torchrun --nproc_per_node 2 --standalone tests/ddp_worker.py DUMP_DIR DELAY -- train ...

DUMP_DIR gets ``rank<N>.pt``: ``{"g", "d", "lr", "iteration", "best_psnr", "rank",
"world_size"}``, where ``g`` and ``d`` are the weights of ``Run.g.module`` and ``Run.d.module``
(``d`` is None without a discriminator). DELAY > 0 makes rank 0 enter ``srlib.train.fit``
DELAY seconds after the others, so its clock starts late (a slow rank): what a time budget
(``max_minutes``) must survive without the ranks stopping apart.
"""
import sys
import time
from pathlib import Path

import torch

from srlib import train
from srlib.cli import main


def _patch(dump_dir: Path, delay: float) -> None:
    fit = train.fit  # srlib.train.train calls the module's fit: replaced here

    def fit_and_dump(run):
        if delay > 0 and run.dist.rank == 0:
            time.sleep(delay)
        summary = fit(run)
        torch.save({"g": run.g.module.state_dict(),
                    "d": run.d.module.state_dict() if run.d is not None else None,
                    "lr": run.g.optimizer.param_groups[0]["lr"],
                    "iteration": run.iteration,
                    "best_psnr": run.best_psnr,
                    "rank": run.dist.rank,
                    "world_size": run.dist.world_size},
                   dump_dir / f"rank{run.dist.rank}.pt")
        return summary

    train.fit = fit_and_dump


if __name__ == "__main__":
    dump, delay, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: ddp_worker.py DUMP_DIR DELAY -- train ..."
    Path(dump).mkdir(parents=True, exist_ok=True)
    _patch(Path(dump), float(delay))
    sys.exit(main(argv))

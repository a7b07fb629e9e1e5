"""torchrun target for test_ddp.py (not collected by pytest; not part of srlib).

Runs ``srlib train ...`` through the real command line (``srlib.cli.main``) and, when it
returns, has every rank write down the state it ended with, so the test can check that the
ranks agree - rank 0's checkpoint alone cannot show that.

    torchrun --nproc_per_node 2 --standalone tests/ddp_worker.py DUMP_DIR DELAY -- train ...

DUMP_DIR gets ``rank<N>.pt`` ({"model", "lr", "iteration", "best_psnr", "discriminator"});
DELAY > 0 makes rank 0 start its clock DELAY seconds after the others (a slow rank), which
is what a time budget (``max_minutes``) must survive without the ranks stopping apart.
"""
import sys
import time
from pathlib import Path

import torch

from srlib.cli import main
from srlib.solvers.base import BaseSolver


def _patch(dump_dir: Path, delay: float) -> None:
    solve, loader = BaseSolver.solve, BaseSolver._loader

    def slow_loader(self):
        if delay > 0 and self.dist.rank == 0:
            time.sleep(delay)
        return loader(self)

    def solve_and_dump(self):
        summary = solve(self)
        disc = getattr(self, "discriminator", None)
        torch.save({"model": self.model.state_dict(),
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "iteration": self.iteration,
                    "best_psnr": self.best_psnr,
                    "discriminator": disc.state_dict() if disc is not None else None},
                   dump_dir / f"rank{self.dist.rank}.pt")
        return summary

    BaseSolver._loader = slow_loader
    BaseSolver.solve = solve_and_dump


if __name__ == "__main__":
    dump, delay, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: ddp_worker.py DUMP_DIR DELAY -- train ..."
    Path(dump).mkdir(parents=True, exist_ok=True)
    _patch(Path(dump), float(delay))
    sys.exit(main(argv))

"""bench.py's loader section: patches/s of the batches ``srlib.train.fit`` iterates
(``make_batches`` over the built run's data) against the patches/s the model consumes."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import FULL_CONFIG, QUICK_CONFIG, Row, median, train_config
from reference_loop import reference_train_steps

from srlib.data.sampler import make_batches
from srlib.train import make_run

TARGET = 5.0  # the loader at least 5x faster than the model


@dataclass
class LoaderResult:
    config: str
    workers: int
    patch: int
    batch: int
    patches_per_s: float
    first_batch_s: float        # worker start-up included
    model_patches_per_s: float
    model_rate_from: str        # "srlib loop" (the train section) or "reference loop"

    @property
    def ratio(self) -> float:
        return self.patches_per_s / self.model_patches_per_s

    def summary(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def time_loader(cfg, batches: int) -> tuple[float, float]:
    """(seconds to the first batch, seconds of the next ``batches``) of the run's batches."""
    run = make_run(cfg, device="cpu", progress=False)
    start = time.perf_counter()
    it = iter(make_batches(run.data, cfg.dataset.params, cfg.seed, batches + 1))
    next(it)
    first = time.perf_counter()
    for _ in range(batches):
        next(it)
    return first - start, time.perf_counter() - first


def section_loader(plan, tmp: Path, consumed: dict[str, float]) -> tuple[list, list[Row]]:
    """``consumed``: the model's images/s per config from the train section, if it ran."""
    print("\n## Data loader: srlib's training batches vs what the model consumes (CPU)",
          flush=True)
    results, rows = [], []
    batches = plan.loader_batches
    for name, path in (("quick", QUICK_CONFIG), ("full", FULL_CONFIG)):
        source = "srlib loop"
        if name not in consumed:  # train section not run: time a few reference steps
            cfg = train_config(path, tmp / f"consume-{name}", 3, precision="fp32",
                               channels_last=False)
            consumed[name] = cfg.dataset.params.batch_size / median(
                reference_train_steps(cfg, 3)[1:])
            source = "reference loop"
        for workers in (0, 2):
            cfg = train_config(path, tmp / f"loader-{name}-{workers}", batches + 1,
                               workers=workers)
            first, seconds = time_loader(cfg, batches)
            res = LoaderResult(name, workers, cfg.patch_size, cfg.dataset.params.batch_size,
                               batches * cfg.dataset.params.batch_size / seconds, first,
                               consumed[name], source)
            results.append(res)
            label = f"{name} config, HR {cfg.patch_size}, {workers} workers"
            print(f"  {label}: {res.patches_per_s:,.0f} patches/s (first batch {first:.2f} s); "
                  f"the model ({source}) takes {res.model_patches_per_s:.2f} patches/s -> "
                  f"{res.ratio:,.0f}x", flush=True)
            rows.append(Row("loader", label, f"{res.patches_per_s:,.0f} patches/s",
                            f"{res.model_patches_per_s:.3g} patches/s consumed",
                            f"{res.ratio:,.0f}x", f">= {TARGET:.0f}x", res.ratio >= TARGET))
    print("  (measured alone; with workers the loader shares the cores with the step, and "
          "with 0 workers its time is part of each iteration - see the train section)")
    return results, rows

"""bench.py's train section: srlib's training loop against the plain loop of reference_loop.py,
on the CPU in fp32. Nothing in srlib is patched: whole runs are timed by srlib's own log
(``log_every`` 1, so each log window is one iteration), steps by calling
``srlib.train.standard_step`` (and the EMA update and the schedule the loop adds) directly, in
turn with the reference step, and data loading by iterating ``make_batches`` alone."""
from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import (
    FULL_CONFIG,
    QUICK_CONFIG,
    Row,
    describe_config,
    fmt_rate,
    logged_rates,
    median,
    train_config,
)
from reference_loop import ReferenceTrainer, reference_train_steps

from srlib.data.sampler import make_batches
from srlib.train import Run, fit, make_run, standard_step

TARGET = 1.05  # srlib's time per iteration at most 1.05x the reference's


@dataclass
class TrainResult:
    """Seconds per iteration or step; every list without its warm-up."""
    config: str
    label: str
    batch: int
    workers: int
    reference_s_per_step: list[float]       # whole reference runs
    srlib_s_per_iteration: list[float]      # whole fit() runs: 1 / logged it/s
    loading_s_per_batch: list[float]        # make_batches alone, the first batch left out
    interleaved_srlib_step_s: list[float]   # standard_step + EMA + schedule ...
    interleaved_reference_step_s: list[float]  # ... and the reference step, taking turns

    @property
    def ratio_median(self) -> float:
        return median(self.srlib_s_per_iteration) / median(self.reference_s_per_step)

    @property
    def ratio_min(self) -> float:
        return min(self.srlib_s_per_iteration) / min(self.reference_s_per_step)

    @property
    def step_ratio(self) -> float:
        """Median of the pairs' ratios: each pair ran back to back, so load that comes and
        goes falls on both alike."""
        return median([a / b for a, b in zip(self.interleaved_srlib_step_s,
                                             self.interleaved_reference_step_s)])

    @property
    def estimate(self) -> float:
        """The step ratio plus srlib's data loading, in units of a reference step."""
        return self.step_ratio + (median(self.loading_s_per_batch)
                                  / median(self.interleaved_reference_step_s))

    def summary(self) -> dict:
        t_ours, t_ref = median(self.srlib_s_per_iteration), median(self.reference_s_per_step)
        return {**asdict(self), "ratio_median": self.ratio_median, "ratio_min": self.ratio_min,
                "interleaved_step_ratio": self.step_ratio,
                "interleaved_estimate_ratio": self.estimate,
                "loading_s_median": median(self.loading_s_per_batch),
                "srlib_it_per_s": 1 / t_ours, "srlib_img_per_s": self.batch / t_ours,
                "reference_it_per_s": 1 / t_ref, "reference_img_per_s": self.batch / t_ref}


def srlib_iterations(cfg) -> list[float]:
    """Seconds of each iteration of a whole ``fit`` (the loop with its loader, EMA, schedule,
    read-backs), from its log of one-iteration windows; the first (warm-up) left out. Its
    status lines (one per iteration in so short a run) are not printed: its notes are."""
    with contextlib.redirect_stdout(io.StringIO()) as said:
        fit(make_run(cfg, device="cpu", progress=False))
    for line in dict.fromkeys(said.getvalue().splitlines()):
        if line.startswith("NOTE:"):
            print(f"  srlib {line}")
    return [1 / rate for rate in logged_rates(cfg)[1:]]


def loading_seconds(run: Run, batches: int) -> list[float]:
    """Seconds per batch of the batches ``fit`` would iterate, fetched alone."""
    params = run.cfg.dataset.params
    it, times = iter(make_batches(run.data, params, run.cfg.seed, batches + 1)), []
    next(it)  # DataLoader workers start here
    for _ in range(batches):
        start = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - start)
    return times


def interleaved_steps(cfg, steps: int) -> tuple[list[float], list[float]]:
    """srlib's per-iteration compute (what ``fit`` does per batch besides fetching it and
    logging: the step, the EMA update, the schedule) and the reference step, one at a time in
    turn on the same tensors; (srlib seconds, reference seconds), the warm-up left out."""
    run = make_run(cfg, device="cpu", progress=False)
    ref = ReferenceTrainer(cfg, "cpu", "fp32")
    run.g.wrapped.train()

    def srlib_step() -> float:
        start = time.perf_counter()
        logs = standard_step(run.g, run.content_loss, ref.lr, ref.hr, run.precision)
        if run.ema is not None:
            run.ema.update()
        run.g.schedule()
        float(logs["loss"])  # on the CPU every op has finished anyway
        return time.perf_counter() - start

    ours, theirs = [], []
    for i in range(steps + 1):
        first, second = (srlib_step, ref.step) if i % 2 else (ref.step, srlib_step)
        times = {first: first(), second: second()}
        if i:  # the first of each is a warm-up
            ours.append(times[srlib_step])
            theirs.append(times[ref.step])
    return ours, theirs


def measure(name: str, path: Path, rounds: int, steady: int, pairs: int,
            tmp: Path) -> TrainResult:
    ref, ours = [], []
    for r in range(rounds):
        cfg = train_config(path, tmp / f"{name}-{r}", steady + 1, log_every=1,
                           precision="fp32", channels_last=False)
        for which in (("ref", "srlib") if r % 2 == 0 else ("srlib", "ref")):
            if which == "ref":
                ref += reference_train_steps(cfg, steady + 1)[1:]
            else:
                ours += srlib_iterations(cfg)
        print(f"  round {r + 1}: reference {median(ref):.3f} s/step, srlib "
              f"{median(ours):.3f} s/iteration (medians so far)", flush=True)
    step_ours, step_ref = interleaved_steps(cfg, pairs)
    loading = loading_seconds(make_run(cfg, device="cpu", progress=False), max(pairs, 8))
    return TrainResult(name, describe_config(name, cfg), cfg.dataset.params.batch_size,
                       cfg.dataset.params.num_workers, ref, ours, loading, step_ours, step_ref)


def report(res: TrainResult, pairs: int) -> list[Row]:
    s = res.summary()
    t_si, t_ri = median(res.interleaved_srlib_step_s), median(res.interleaved_reference_step_s)
    loading_ms = s["loading_s_median"] * 1e3
    print(f"  reference: {s['reference_it_per_s']:.3f} steps/s, "
          f"{s['reference_img_per_s']:.2f} images/s")
    print(f"  srlib:     {s['srlib_it_per_s']:.3f} it/s,    {s['srlib_img_per_s']:.2f} images/s")
    print(f"  ratio srlib/reference time per iteration: {res.ratio_median:.3f} (median), "
          f"{res.ratio_min:.3f} (fastest of each)")
    print(f"  step by step, alternated ({pairs} pairs): srlib {t_si:.3f} s, reference "
          f"{t_ri:.3f} s (medians); median ratio of the pairs {res.step_ratio:.3f}; srlib's "
          f"data loading alone {loading_ms:.1f} ms per batch ({res.workers} workers); both "
          f"together: {res.estimate:.3f}; target <= {TARGET}", flush=True)
    return [Row("train", res.label + ", whole runs alternated",
                f"{fmt_rate(s['srlib_it_per_s'])} it/s, {fmt_rate(s['srlib_img_per_s'])} img/s",
                f"{fmt_rate(s['reference_it_per_s'])} it/s, "
                f"{fmt_rate(s['reference_img_per_s'])} img/s",
                f"{res.ratio_median:.3f}x time (fastest: {res.ratio_min:.3f}x)",
                "(load-sensitive)"),
            Row("train", res.label + ", steps alternated + srlib's loading",
                f"{t_si:.3g} s/step + {loading_ms:.1f} ms", f"{t_ri:.3g} s/step",
                f"{res.estimate:.3f}x time", f"<= {TARGET}x", res.estimate <= TARGET)]


def section_train(plan, tmp: Path) -> tuple[list[TrainResult], list[Row]]:
    print("\n## Training loop: srlib fit() vs plain PyTorch loop (CPU, fp32)", flush=True)
    print("  srlib: the shipped config, validation and periodic checkpoints off, T91 data "
          "through srlib's loader, its own log of every iteration; reference: "
          "reference_loop.py on pre-made tensors.")
    results, rows = [], []
    for name, path in (("quick", QUICK_CONFIG), ("full", FULL_CONFIG)):
        rounds, steady = plan.train_rounds[name]
        pairs = plan.interleaved_pairs[name]
        probe = train_config(path, tmp / "probe", 1, precision="fp32", channels_last=False)
        print(f"\n### {describe_config(name, probe)}: {rounds} round(s) x {steady} measured "
              f"iterations (+1 warm-up each), dataloader workers "
              f"{probe.dataset.params.num_workers}", flush=True)
        res = measure(name, path, rounds, steady, pairs, tmp)
        results.append(res)
        rows += report(res, pairs)
    return results, rows

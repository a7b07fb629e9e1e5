"""Training: build everything from the config in order, then one loop you can read at once.

Read :func:`train`, :func:`fit`, then the step the config's solver names: :func:`standard_step`
or :func:`gan_step`; the networks are in ``srlib/models/``, the losses in ``srlib/losses.py``.
The rest makes a long run safe to leave alone: losses checked for NaN before anything is saved,
atomic checkpoints that resume exactly after a kill, and the same decisions on every DDP rank.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

try:  # optional: pip install srlib[tensorboard], then `tensorboard --logdir runs`
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None

from srlib import build, checkpoint, config
from srlib.build import Run
from srlib.data.sampler import make_batches
from srlib.distributed import DistInfo
from srlib.evaluate import bicubic_baseline, score_model
from srlib.inference import upscale
from srlib.metrics import summarize


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


def autocast(run: Run):
    """Mixed precision for forward passes (backward runs outside it)."""
    if run.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if run.precision == "bf16" else torch.float16
    return torch.autocast(run.device.type, dtype=dtype)


def standard_step(run: Run, lr: torch.Tensor, hr: torch.Tensor) -> dict:
    """One update of G on the weighted content loss (SRResNet, MSRResNet)."""
    if not run.model.training:  # validation switched it to eval; a walk over every module
        run.net.train()         # costs ~1 ms of host time, so not on every step
    with autocast(run):
        sr = run.net(lr)
    total, terms = run.loss(sr.float(), hr)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return {"loss": total.detach(), **terms}


def gan_step(run: Run, lr: torch.Tensor, hr: torch.Tensor) -> dict:
    """One update of G (content + weighted adversarial loss, D frozen), then one of D
    (real HR against the detached SR). D(real) and D(fake) are logged as probabilities."""
    if not (run.model.training and run.d.training):
        run.net.train()
        run.d_net.train()
    run.d.requires_grad_(False)  # G's loss flows through D, but D's weights are not G's to move
    with autocast(run):
        sr = run.net(lr)
        fake_logits = run.d_net(sr).float()
        # only the relativistic loss judges SR against D(HR); the vanilla one needs D(SR) alone
        real_logits = (run.d_net(hr).detach().float()
                       if run.adversarial.needs_real_logits else None)
    content, terms = run.loss(sr.float(), hr)
    adv = run.adversarial.generator_loss(real_logits, fake_logits)
    g_loss = content + run.adv_weight * adv
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(g_loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()

    run.d.requires_grad_(True)
    with autocast(run):
        real_logits = run.d_net(hr)
        fake_logits = run.d_net(sr.detach())  # detach: D's loss must not reach G
    d_loss = run.adversarial.discriminator_loss(real_logits.float(), fake_logits.float())
    run.d_optimizer.zero_grad(set_to_none=True)
    run.d_scaler.scale(d_loss).backward()
    run.d_scaler.step(run.d_optimizer)
    run.d_scaler.update()
    if run.d_scheduler is not None:
        run.d_scheduler.step()
    return {"loss": g_loss.detach(), **terms, "adversarial": adv.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}


STEPS = {"std": standard_step, "gan": gan_step}


def train(cfg: config.Config | str, overrides: list[str] | None = None, progress: bool = True,
          device: str | None = None, overwrite: bool = False) -> dict:
    """Train; returns a summary with the best validation Y-PSNR and, on the same images,
    bicubic's. An unfinished run in the logdir is resumed; a finished one is kept (an error)
    unless ``overwrite``."""
    cfg = cfg if isinstance(cfg, config.Config) else config.load(cfg, overrides)
    dist = DistInfo.from_environment()
    try:
        cfg = checkpoint.claim_logdir(cfg, overwrite, dist.is_main)
        dist.barrier()
        summary = fit(build.run(cfg, device, dist, progress))
        if cfg.validation is not None and dist.is_main:
            rows = bicubic_baseline(cfg.validation.root, cfg.scale,
                                    max_images=cfg.validation.max_images)
            summary["bicubic_psnr_y"] = summarize(rows)["psnr_y"]
            summary["gain_db"] = summary["best_val_psnr_y"] - summary["bicubic_psnr_y"]
        return summary
    finally:
        dist.close()


def batches(run: Run):
    """Batches from the current iteration on, a pure function of (seed, iteration)."""
    return make_batches(run.train_set, run.cfg.dataset.params, run.cfg.seed, run.total,
                        run.iteration, run.dist.rank, run.dist.world_size, run.device_batches)


def fit(run: Run) -> dict:
    """The loop: step, EMA, schedule; every ``log_every`` a log line, every
    ``validation.every`` a validation (best.pt), every ``save_every`` last.pt."""
    cfg, dist = run.cfg, run.dist
    step = STEPS[cfg.solver]
    val_set = (build.eval_dataset(cfg.validation.name, cfg.validation.root, cfg.scale)
               if cfg.validation is not None else None)
    if dist.is_main:
        config.save(cfg)
        run.writer = SummaryWriter(cfg.logdir) if SummaryWriter is not None else None
        for note in run.notes:
            print(f"NOTE: {note}", flush=True)
            checkpoint.append_log(run, {"kind": "note", "iteration": run.iteration, "text": note})
    if val_set is not None and run.iteration == 0:
        _validate(run, val_set)  # where the curves start: the untrained (or loaded) model
    started = time.monotonic()
    deadline = started + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    bar = tqdm(total=run.total, initial=run.iteration, unit="it", dynamic_ncols=True,
               desc=f"{cfg.model} ({cfg.solver})", disable=not (run.progress and dist.is_main))
    stopped_by_time, window, window_start = False, [], time.monotonic()
    for batch in batches(run):  # this rank's share of each iteration's batch, resumable
        lr, hr = _to_device(run, batch["lr"]), _to_device(run, batch["hr"])
        window.append(step(run, lr, hr))  # tensors: the host does not wait for the device
        run.iteration += 1
        if run.ema is not None:
            run.ema.update()
        if run.scheduler is not None and not _on_plateau(run.scheduler):
            run.scheduler.step()
        bar.update(1)
        logging = run.iteration % cfg.log_every == 0 or run.iteration == run.total
        validating = val_set is not None and run.iteration % cfg.validation.every == 0
        saving = run.iteration % cfg.save_every == 0
        if logging or validating or saving:
            _settle(run, window)  # one read-back; stops on NaN before anything is saved
        if logging:
            _log_window(run, window, time.monotonic() - window_start, bar, deadline)
            window, window_start = [], time.monotonic()
        if validating:
            _validate(run, val_set)
        if saving:
            checkpoint.save_run(run, "last")
        # Under DDP the ranks' clocks disagree: stop all when any is out of time, or the
        # others would wait forever in the next step's all-reduce.
        if math.isfinite(deadline) and dist.any(time.monotonic() > deadline, run.device):
            stopped_by_time = True
            break
    bar.close()
    if window:
        _settle(run, window)
        _log_window(run, window, time.monotonic() - window_start, None, deadline)
    if val_set is not None and run.iteration % cfg.validation.every != 0:
        _validate(run, val_set)
    checkpoint.save_run(run, "last", finished=True)
    if run.writer is not None:
        run.writer.close()
    dist.barrier()
    return {"iterations": run.iteration, "minutes": (time.monotonic() - started) / 60,
            "stopped_by_time": stopped_by_time, "best_val_psnr_y": run.best_psnr,
            "logdir": cfg.logdir, "notes": list(run.notes)}


def _to_device(run: Run, x: torch.Tensor) -> torch.Tensor:
    x = x.to(run.device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if run.cfg.channels_last else x


def _on_plateau(scheduler) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _settle(run: Run, window: list[dict]) -> None:
    """Turn the window's logged tensors into floats with one read-back, and raise
    :class:`TrainingDiverged` at the first non-finite value."""
    slots = [(logs, k) for logs in window for k, v in logs.items() if torch.is_tensor(v)]
    if slots:
        values = torch.stack([logs[k].float().reshape(()) for logs, k in slots]).tolist()
        for (logs, k), value in zip(slots, values):
            logs[k] = value
    first = run.iteration - len(window) + 1  # the iteration of window[0]
    for offset, logs in enumerate(window):
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            last = Path(run.cfg.logdir) / "last.pt"
            kept = (f"the last good checkpoint {last} is intact" if last.exists() else
                    "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"loss became non-finite at iteration {first + offset} ({bad}); training "
                f"stopped and {kept}. Lower the learning rate, or use precision fp32.")


def _log_window(run: Run, window: list[dict], seconds: float, bar, deadline: float) -> None:
    """A line in metrics.jsonl (and TensorBoard); without a bar, now and then a status line."""
    keys = list(window[0])
    means = [sum(w[k] for w in window) / len(window) for k in keys]
    # Each rank saw its share of the batch: log the whole batch's figures (their mean).
    means = dict(zip(keys, run.dist.mean(means, run.device)))
    rate, lr = len(window) / max(1e-9, seconds), run.optimizer.param_groups[0]["lr"]
    if bar is not None:
        bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
    record = {"kind": "train", "iteration": run.iteration, **means, "it_per_s": rate, "lr": lr}
    checkpoint.append_log(run, record)
    if run.writer is not None:
        for key in (*keys, "lr"):
            run.writer.add_scalar(f"train/{key}", record[key], run.iteration)
    every = max(1, run.total // (20 * run.cfg.log_every))
    if not run.progress and run.dist.is_main and run.iteration % (every * run.cfg.log_every) == 0:
        eta = min((run.total - run.iteration) / rate, deadline - time.monotonic())
        print(f"iteration {run.iteration}/{run.total}  loss {means['loss']:.4f}  lr {lr:.2e}  "
              f"{rate:.1f} it/s  ETA {eta / 60:.1f} min", flush=True)


def _validate(run: Run, val_set) -> None:
    """Rank 0 scores the EMA weights (or the model's); every rank gets the Y-PSNR, so a
    plateau scheduler and best.pt decide alike on all of them."""
    psnr_y = 0.0
    if run.dist.is_main:
        rows = score_model(run.ema.module if run.ema else run.model, val_set,
                           max_images=run.cfg.validation.max_images)
        scores = {k: v for k, v in summarize(rows).items() if k != "name"}
        checkpoint.append_log(run, {"kind": "val", "iteration": run.iteration, **scores})
        psnr_y = scores["psnr_y"]
        if run.writer is not None:
            for key, value in scores.items():
                run.writer.add_scalar(f"val/{key}", value, run.iteration)
            for item in val_set.items[:min(3, run.cfg.validation.max_images or 3)]:
                sr = upscale(run.ema.module if run.ema else run.model, item["lr"], val_set.scale)
                run.writer.add_image(f"val/{item['name']}", sr, run.iteration)
    psnr_y = run.dist.broadcast(psnr_y, run.device)  # the others wait here for rank 0
    if _on_plateau(run.scheduler):
        run.scheduler.step(psnr_y)
    if psnr_y > run.best_psnr:
        run.best_psnr = psnr_y
        checkpoint.save_run(run, "best")
    if not run.progress and run.dist.is_main:
        print(f"validation at {run.iteration}: {run.cfg.validation.name} Y-PSNR {psnr_y:.2f} dB"
              f" (best {run.best_psnr:.2f})", flush=True)
    run.dist.barrier()


def describe(summary: dict, val_name: str = "validation") -> str:
    """One paragraph a person reads at the end of a run."""
    lines = [f"trained {summary['iterations']} iterations in {summary['minutes']:.1f} min"
             + (" (stopped by max_minutes)" if summary.get("stopped_by_time") else ""),
             f"best {val_name} Y-PSNR: {summary['best_val_psnr_y']:.2f} dB"]
    if "bicubic_psnr_y" in summary:
        lines.append(f"bicubic {val_name} Y-PSNR: {summary['bicubic_psnr_y']:.2f} dB "
                     f"(gain {summary['gain_db']:+.2f} dB)")
    lines.append(f"checkpoints and metrics.jsonl in {os.path.relpath(summary['logdir'])}")
    return "\n".join(lines)

"""BaseSolver: everything a training run needs except the step itself.

Subclasses implement :meth:`train_step` (one optimisation step on one batch) and the parts of
the checkpoint that are theirs. The loop, validation, checkpoints, logging and resume live
here once, so the standard and GAN solvers cannot drift apart.
"""
from __future__ import annotations

import abc
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from srlib import config as config_mod
from srlib import registry
from srlib.solvers import checkpoint as ckpt
from srlib.solvers.distributed import DistInfo
from srlib.solvers.ema import make_ema
from srlib.solvers.sampler import IterationBatchSampler, SeededItems
from srlib.solvers.validate import validate


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


class BaseSolver(abc.ABC):
    """Builds model, data, optimiser and scheduler from a :class:`Config`; runs ``solve()``."""

    def __init__(self, config: config_mod.Config, device: Optional[str] = None,
                 progress: bool = True, dist: Optional[DistInfo] = None):
        self.config = config
        self.dist = dist or DistInfo()
        self.device = torch.device(device or _resolve_device(config.device, self.dist))
        self.progress = progress and self.dist.is_main
        self.logdir = Path(config.logdir)
        batch = config.dataset.params.batch_size
        if batch % self.dist.world_size:
            raise config_mod.ConfigError(
                f'key "dataset.params.batch_size": {batch} does not split evenly over the '
                f"{self.dist.world_size} processes of this torchrun run (each rank takes an "
                f"equal share of the global batch); use a multiple of {self.dist.world_size}")
        torch.manual_seed(config.seed)

        self.model = registry.build_model(config).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.dist.wrap(self.model)  # DDP when distributed, the model otherwise
        if config.compile:  # the same weights: checkpoints still save self.model's state
            mode = "default" if config.compile is True else config.compile
            self.net = torch.compile(self.net, mode=mode)
        self.optimizer = registry.build_optimizer(config.optimizer, self.model.parameters())
        self.train_set = registry.build_train_dataset(config)
        self.device_batches = None
        if config.dataset.on_device:  # the whole set as uint8 on the device (see its module)
            from srlib.data.device_batches import DeviceBatches
            self.device_batches = DeviceBatches(self.train_set, self.device,
                                                progress=self.progress)
        self.total_iterations = self._total_iterations()
        self.scheduler = registry.build_scheduler(config.scheduler, self.optimizer,
                                                  self.total_iterations)
        self.ema = make_ema(self.model, config.ema_decay) if config.ema_decay else None
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=config.precision == "fp16")
        self.val_set = None
        if config.validation is not None:
            v = config.validation
            self.val_set = registry.build_eval_dataset(v.name, v.root, scale=config.scale)
        self.iteration = 0
        self.best_psnr = -math.inf
        self.history: list[dict] = []
        self.notes: list[str] = []  # said in every log line's header (e.g. random VGG weights)

    # ------------------------------------------------------------------ subclass hooks

    @abc.abstractmethod
    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        """One optimisation step; returns what to log (``loss`` at least) as detached 0-dim
        tensors (or floats): the loop reads them back once per logging window."""

    def extra_state(self) -> dict:
        """Subclass state saved beside the generator's (the GAN solver adds D)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` saved."""

    @abc.abstractmethod
    def load_checkpoint(self, path) -> None:
        """Continue from ``path`` (the original interface: each solver says what it restores)."""

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_state(self) -> dict:
        return {
            "format": ckpt.FORMAT,
            "iteration": self.iteration,
            "best_psnr": self.best_psnr,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_state": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "extra": self.extra_state(),
        }

    def save_checkpoint(self, name: str = "last") -> Optional[Path]:
        """Atomically write ``logdir/<name>.pt`` (rank 0 only)."""
        if not self.dist.is_main:
            return None
        return ckpt.save_atomic(self.checkpoint_state(), self.logdir / f"{name}.pt")

    def restore(self, path) -> None:
        state = ckpt.load(path, map_location=self.device)
        if state.get("format") != ckpt.FORMAT:
            raise ValueError(f"{path}: not an srlib training checkpoint (use generator_path "
                             "to start from bare generator weights)")
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.load_state_dict(state.get("ema_state") or {})
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self.iteration = int(state["iteration"])
        self.best_psnr = float(state["best_psnr"])
        self.load_extra_state(state.get("extra") or {})
        self._truncate_log(self.iteration)

    # ------------------------------------------------------------------ the loop

    def solve(self) -> dict:
        """Train until the iteration or time budget ends; returns the final summary."""
        cfg = self.config
        if cfg.checkpoint:
            self.load_checkpoint(cfg.checkpoint)
        if self.dist.is_main:
            config_mod.save(cfg, self.logdir)
            for note in self.notes:
                print(f"NOTE: {note}", flush=True)
                self._append_log({"kind": "note", "iteration": self.iteration, "text": note})
        loader = self._loader()
        started = time.monotonic()
        deadline = started + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
        bar = tqdm(total=self.total_iterations, initial=self.iteration, disable=not self.progress,
                   desc=f"{cfg.model} ({cfg.solver})", unit="it", dynamic_ncols=True)
        stopped_by_time = False
        window, window_start = [], time.monotonic()
        try:
            for batch in loader:
                lr = self._to_device(batch["lr"])
                hr = self._to_device(batch["hr"])
                window.append(self.train_step(lr, hr))  # tensors: no wait for the device
                self.iteration += 1
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                if self.scheduler is not None and not self._plateau_scheduler:
                    self.scheduler.step()
                bar.update(1)
                logging = (self.iteration % cfg.log_every == 0
                           or self.iteration == self.total_iterations)
                validating = self.val_set is not None and self.iteration % cfg.validation.every == 0
                saving = self.iteration % cfg.save_every == 0
                if logging or validating or saving:
                    # Read the window's losses back (one device sync) and stop on NaN/Inf
                    # before anything is validated or saved.
                    self._settle(window)
                if logging:
                    rate = len(window) / max(1e-9, time.monotonic() - window_start)
                    self._log_train(window, rate, bar)
                    window, window_start = [], time.monotonic()
                if validating:
                    self._validate_and_keep_best()
                if saving:
                    self.save_checkpoint("last")
                # Under DDP the ranks' clocks disagree: stop all of them when any is out of
                # time, or the others would wait forever in the next step's all-reduce.
                if math.isfinite(deadline) and self.dist.any(time.monotonic() > deadline,
                                                              self.device):
                    stopped_by_time = True
                    break
        finally:
            bar.close()
        if window:
            self._settle(window)
            self._log_train(window, len(window) / max(1e-9, time.monotonic() - window_start), None)
        if self.val_set is not None and self.iteration % cfg.validation.every != 0:
            self._validate_and_keep_best()
        self.save_checkpoint("last")
        self.dist.barrier()
        summary = {"iterations": self.iteration, "minutes": (time.monotonic() - started) / 60,
                   "stopped_by_time": stopped_by_time, "best_val_psnr_y": self.best_psnr,
                   "logdir": str(self.logdir)}
        return summary

    # ------------------------------------------------------------------ pieces

    def _total_iterations(self) -> int:
        cfg = self.config
        if cfg.iterations is not None:
            return cfg.iterations
        if cfg.epochs is not None:
            per_epoch = math.ceil(len(self.train_set) / cfg.dataset.params.batch_size)
            return cfg.epochs * per_epoch
        return 10**9  # bounded by max_minutes only

    def _loader(self):
        """This rank's batches from the current iteration on: a DataLoader over the CPU
        dataset, or batches cut on the device when ``dataset.on_device`` is set."""
        p = self.config.dataset.params
        sampler = IterationBatchSampler(len(self.train_set), p.batch_size, self.config.seed,
                                        self.total_iterations, start=self.iteration,
                                        shuffle=p.shuffle, rank=self.dist.rank,
                                        world_size=self.dist.world_size)
        if self.device_batches is not None:
            return (self.device_batches.batch(items) for items in sampler)
        return DataLoader(SeededItems(self.train_set), batch_sampler=sampler,
                          num_workers=p.num_workers, pin_memory=p.pin_memory,
                          persistent_workers=p.num_workers > 0,
                          prefetch_factor=4 if p.num_workers > 0 else None)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self):
        """Mixed-precision context for forward passes (backward runs outside it)."""
        precision = self.config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def _plateau_scheduler(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def _settle(self, window: list[dict]) -> None:
        """Turn the window's logged tensors into floats in place, with one read-back for all of
        them, and raise :class:`TrainingDiverged` at the first non-finite value.

        Steps return detached tensors instead of floats so a GPU step never waits for the
        host; this runs before every log line, validation and checkpoint, so no NaN weights
        are ever scored or saved.
        """
        slots = [(i, k) for i, logs in enumerate(window) for k, v in logs.items()
                 if isinstance(v, torch.Tensor)]
        if slots:
            values = torch.stack([window[i][k].float().reshape(()) for i, k in slots]).tolist()
            for (i, k), value in zip(slots, values):
                window[i][k] = value
        first = self.iteration - len(window) + 1  # the iteration of window[0]
        for offset, logs in enumerate(window):
            bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
            if bad:
                last = self.logdir / "last.pt"
                kept = (f"the last good checkpoint {last} is intact" if last.exists() else
                        "no checkpoint had been written yet")
                raise TrainingDiverged(
                    f"loss became non-finite at iteration {first + offset} ({bad}); training "
                    f"stopped and {kept}. Lower the learning rate, or use precision fp32.")

    def eval_model(self) -> torch.nn.Module:
        """The weights to evaluate and publish: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _validate_and_keep_best(self) -> None:
        """Rank 0 validates; every rank gets its Y-PSNR, so a plateau scheduler (and best_psnr)
        steps alike on all of them and their learning rates never part."""
        psnr_y = 0.0
        if self.dist.is_main:
            cfg = self.config.validation
            scores = validate(self.eval_model(), self.val_set, self.device,
                              scale=self.config.scale, max_images=cfg.max_images)
            self._append_log({"kind": "val", "iteration": self.iteration, **scores})
            psnr_y = scores["psnr_y"]
        psnr_y = self.dist.broadcast(psnr_y, self.device)  # the others wait here for rank 0
        if self._plateau_scheduler:
            self.scheduler.step(psnr_y)
        if psnr_y > self.best_psnr:
            self.best_psnr = psnr_y
            self.save_checkpoint("best")  # rank 0 only
        self.dist.barrier()

    def _log_train(self, window: list[dict], rate: float, bar) -> None:
        keys = list(window[0].keys())
        means = [sum(w[k] for w in window) / len(window) for k in keys]
        # Each rank saw its share of the batch: log the whole batch's figures (their mean).
        means = dict(zip(keys, self.dist.mean(means, self.device)))
        record = {"kind": "train", "iteration": self.iteration, **means, "it_per_s": rate,
                  "lr": self.optimizer.param_groups[0]["lr"]}
        if bar is not None:
            bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
        self._append_log(record)

    def _append_log(self, record: dict) -> None:
        self.history.append(record)
        if not self.dist.is_main:
            return
        self.logdir.mkdir(parents=True, exist_ok=True)
        with open(self.logdir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _truncate_log(self, iteration: int) -> None:
        """Drop log lines written after the checkpoint we resume from (a crash leaves them)."""
        path = self.logdir / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["iteration"] <= iteration]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.history = [json.loads(line) for line in kept]


def _resolve_device(name: str, dist: DistInfo) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError('config "device": "cuda" but no CUDA GPU is visible; '
                               'use "auto" or "cpu"')
        return f"cuda:{dist.local_rank}"
    return name

"""Training: one loop you can read at once, and its two steps. Read :class:`Run` (what the loop
holds), :func:`fit` (the loop), then the solver's step, :func:`standard_step` or :func:`gan_step`.
G and D are each a :class:`Network`, built alike by :func:`network`; the architectures are in
``srlib/models/``, the losses in ``srlib/losses.py``. :func:`make_run` builds a run from a config
and :func:`train` claims its logdir and fits it. The rest makes a long run safe to leave alone:
NaN stops before a save, atomic checkpoints that resume exactly, SIGINT/SIGTERM end in a saved
``last.pt``, and every DDP rank decides alike."""
import copy
import math
import signal
import time
from dataclasses import dataclass

import torch
from torch import nn

from srlib import build, checkpoint, config, logdir
from srlib.data.device_batches import DeviceBatches
from srlib.data.sampler import make_batches
from srlib.distributed import DistInfo, Interrupted, autocast, pick_device, stop_signals
from srlib.evaluate import bicubic_baseline, score_model
from srlib.logbook import Logbook, read_back
from srlib.losses import AdversarialLoss, CombinedLoss
from srlib.metrics import summarize


@dataclass
class Network:
    """A network being trained, G or D: the same five things, built by :func:`network`."""
    module: nn.Module                # its weights: what checkpoints save and restore
    wrapped: nn.Module               # the same module as a step calls it (DDP, compiled)
    optimizer: torch.optim.Optimizer
    scheduler: object | None         # every iteration, or (a plateau one) every validation
    scaler: torch.amp.GradScaler     # fp16 loss scaling; a no-op otherwise

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.wrapped(x)

    def schedule(self, psnr: float | None = None) -> None:
        """Step the schedule: a per-iteration one without ``psnr``, a plateau one only with it."""
        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if self.scheduler is not None and plateau == (psnr is not None):
            self.scheduler.step(*([psnr] if plateau else []))


class EMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every step; buffers (batch-norm
    statistics) are copied. One fused foreach call over tensor lists gathered once: torch's
    ``AveragedModel`` walks the module tree each step, which costs more than a GPU step."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).requires_grad_(False)
        buffers = [(e, m) for e, m in zip(self.module.buffers(), model.buffers())
                   if e.is_floating_point()]
        self._pairs = (list(self.module.parameters()), list(model.parameters()),
                       [e for e, _ in buffers], [m for _, m in buffers])

    @torch.no_grad()
    def update(self) -> None:
        ema_p, model_p, ema_b, model_b = self._pairs
        torch._foreach_lerp_(ema_p, model_p, 1.0 - self.decay)
        if ema_b:
            torch._foreach_copy_(ema_b, model_b)


@dataclass
class Run:
    """Everything the loop uses, built once by :func:`make_run`."""
    cfg: config.Config
    dist: DistInfo
    device: torch.device
    g: Network                          # the generator
    d: Network | None                   # the discriminator (solver "gan")
    ema: EMA | None                     # G's average: validated, saved and published
    content_loss: CombinedLoss          # pixel and perceptual terms, weighted
    adversarial: AdversarialLoss | None
    adv_weight: float
    data: object                        # PairedPatchDataset, or DeviceBatches of it
    val_set: object                     # BenchmarkDataset of the held-aside images, or None
    total: int                          # iterations this run trains for
    log: Logbook
    iteration: int = 0
    best_psnr: float = -math.inf

    @property
    def precision(self) -> str:  # what autocast uses: the config's on a GPU, fp32 on a CPU
        return self.cfg.precision if self.device.type == "cuda" else "fp32"

    def networks(self) -> dict[str, Network]:
        return {"g": self.g} if self.d is None else {"g": self.g, "d": self.d}


def network(module: nn.Module, cfg: config.Config, opt_cfg, sched_cfg, key: str,
            device: torch.device, dist: DistInfo, total: int) -> Network:
    """G or D made ready to train alike: on the device (channels_last), wrapped for DDP, compiled
    (CUDA graphs on a GPU only), with its own optimiser, schedule, fp16 scaler and config key."""
    module = module.to(device)
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    wrapped = dist.wrap(module)
    if cfg.compile and (device.type == "cuda" or cfg.compile in (True, "default")):
        wrapped = torch.compile(wrapped, mode=None if cfg.compile is True else cfg.compile)
    optimizer = build.optimizer(opt_cfg, module.parameters(), f"{key}optimizer")
    return Network(module, wrapped, optimizer,
                   build.scheduler(sched_cfg, optimizer, total, f"{key}scheduler"),
                   torch.amp.GradScaler(device.type, enabled=device.type == "cuda"
                                        and cfg.precision == "fp16"))


def make_run(cfg: config.Config, device: str | None = None, dist: DistInfo | None = None,
             progress: bool = True) -> Run:
    """Everything a run needs, in order: G (from generator_path), the data, the losses, D for
    a GAN, then the state of the checkpoint being resumed. Writes nothing."""
    dist = dist or DistInfo()
    build.check(cfg, dist.world_size)
    device = torch.device(device or pick_device(cfg.device, dist.local_rank))
    torch.manual_seed(cfg.seed)
    g, data = build.model(cfg), build.train_dataset(cfg, dist, progress)
    total = cfg.iterations or (cfg.epochs * math.ceil(len(data) / cfg.dataset.params.batch_size)
                               if cfg.epochs else 10**9)  # else bounded by max_minutes only
    if cfg.dataset.on_device:  # the whole set as uint8 on the device (see its module)
        data = DeviceBatches(data, device, progress=progress and dist.is_main)
    content = build.content_loss(cfg).to(device)
    log = Logbook(cfg.logdir, total, dist, device, progress, build.notes(cfg, device, content))
    val, g = cfg.validation, network(g, cfg, cfg.optimizer, cfg.scheduler, "", device, dist, total)
    run = Run(cfg=cfg, dist=dist, device=device, g=g, d=None, content_loss=content,
              ema=EMA(g.module, cfg.ema_decay) if cfg.ema_decay else None, adversarial=None,
              adv_weight=0.0, data=data, total=total, log=log,
              val_set=val and build.eval_dataset(val.root, cfg.scale, val.name))
    if cfg.solver == "gan":
        run.adv_weight, run.adversarial = build.adversarial(cfg)
        run.d = network(build.discriminator(cfg), cfg, cfg.discriminator.optimizer,
                        cfg.discriminator.scheduler, "discriminator.", device, dist, total)
    if cfg.checkpoint:
        checkpoint.restore(run, cfg.checkpoint)
    return run


def standard_step(g: Network, loss: CombinedLoss, lr: torch.Tensor, hr: torch.Tensor,
                  precision: str = "fp32") -> dict:
    """One update of G on the weighted content loss (SRResNet, MSRResNet)."""
    with autocast(lr.device.type, precision):
        sr = g(lr)                           # (N, 3, h, w) -> (N, 3, s*h, s*w)
    total, terms = loss(sr.float(), hr)      # the loss in fp32, whatever autocast computed
    g.optimizer.zero_grad(set_to_none=True)
    g.scaler.scale(total).backward()
    g.scaler.step(g.optimizer)
    g.scaler.update()
    return {"loss": total.detach(), **terms}


def gan_step(g: Network, d: Network, loss: CombinedLoss, adversarial: AdversarialLoss,
             adv_weight: float, lr: torch.Tensor, hr: torch.Tensor,
             precision: str = "fp32") -> dict:
    """One update of G (content + weighted adversarial loss, D frozen), then one of D
    (real HR against the detached SR). D(real) and D(fake) are logged as probabilities."""
    d.module.requires_grad_(False)  # G's loss flows through D, but D's weights are not G's
    with autocast(lr.device.type, precision):
        sr = g(lr)                           # (N, 3, s*h, s*w)
        fake_logits = d(sr).float()          # (N, 1)
        # only the relativistic loss judges SR against D(HR); the vanilla one needs D(SR) alone
        real_logits = d(hr).detach().float() if adversarial.needs_real_logits else None
    content, terms = loss(sr.float(), hr)
    adv = adversarial.generator_loss(real_logits, fake_logits)
    g_loss = content + adv_weight * adv
    g.optimizer.zero_grad(set_to_none=True)
    g.scaler.scale(g_loss).backward()
    g.scaler.step(g.optimizer)
    g.scaler.update()

    d.module.requires_grad_(True)
    with autocast(lr.device.type, precision):
        real_logits = d(hr).float()
        fake_logits = d(sr.detach()).float()  # detach: D's loss must not reach G
    d_loss = adversarial.discriminator_loss(real_logits, fake_logits)
    d.optimizer.zero_grad(set_to_none=True)
    d.scaler.scale(d_loss).backward()
    d.scaler.step(d.optimizer)
    d.scaler.update()
    p_real = torch.sigmoid(torch.stack([real_logits, fake_logits]).detach()).mean((1, 2))
    return {"loss": g_loss.detach(), **terms, "adversarial": adv.detach(),
            "d_loss": d_loss.detach(), "d_real": p_real[0], "d_fake": p_real[1]}


def train(cfg: config.Config | str, overrides: list[str] | None = None, progress: bool = True,
          device: str | None = None, overwrite: bool = False) -> dict:
    """Train; returns a summary with the best validation Y-PSNR and, on the same images,
    bicubic's. An unfinished run in the logdir is resumed; a finished one is kept (an error)
    unless ``overwrite``, which replaces it only once the new run is built."""
    cfg = cfg if isinstance(cfg, config.Config) else config.load(cfg, overrides)
    build.check(cfg)  # names first: a typo never touches the logdir
    dist = DistInfo.from_environment()
    try:
        with logdir.claim(cfg, overwrite, dist.is_main) as (cfg, fresh):
            run = make_run(cfg, device, dist, progress)
            dist.check_same(run.iteration, run.device, "the iteration to resume from")
            if fresh and dist.is_main:  # only now, with the new run built, may the old go
                logdir.clear(cfg.logdir)
            dist.barrier()
            summary = fit(run)
        if cfg.validation is not None and dist.is_main:  # bicubic on the same images
            v = cfg.validation
            summary["bicubic_psnr_y"] = summarize(bicubic_baseline(v.root, cfg.scale,
                                                                   v.max_images))["psnr_y"]
            summary["gain_db"] = summary["best_val_psnr_y"] - summary["bicubic_psnr_y"]
        return summary
    finally:
        dist.close()


def fit(run: Run) -> dict:
    """The loop: step, EMA, schedules; every ``log_every`` a log line, every
    ``validation.every`` a validation (best.pt), every ``save_every`` last.pt."""
    cfg, dist, log = run.cfg, run.dist, run.log
    log.start(run.iteration, config.dumps(cfg), f"{cfg.model} ({cfg.solver})")
    for net in run.networks().values():
        net.wrapped.train()
    if run.val_set is not None and run.iteration == 0:
        validate(run)  # where the curves start: the untrained (or loaded) model
    started = window_start = time.monotonic()
    deadline = started + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    window, stop, stopped = [], {}, None
    layout = torch.channels_last if cfg.channels_last else torch.preserve_format
    with stop_signals(stop):
        for batch in make_batches(run.data, cfg.dataset.params, cfg.seed, run.total,
                                  run.iteration, dist.rank, dist.world_size):
            lr, hr = (batch[k].to(run.device, non_blocking=True, memory_format=layout)
                      for k in ("lr", "hr"))  # (N, 3, p/s, p/s), (N, 3, p, p)
            if run.d is None:
                logs = standard_step(run.g, run.content_loss, lr, hr, run.precision)
            else:
                logs = gan_step(run.g, run.d, run.content_loss, run.adversarial, run.adv_weight,
                                lr, hr, run.precision)
            window.append(logs)  # tensors: the host does not wait for the device
            run.iteration += 1
            if run.ema is not None:
                run.ema.update()
            for net in run.networks().values():
                net.schedule()
            log.step()
            logging = run.iteration % cfg.log_every == 0 or run.iteration == run.total
            validating = run.val_set is not None and run.iteration % cfg.validation.every == 0
            saving = run.iteration % cfg.save_every == 0
            if logging or validating or saving:
                read_back(window, run.iteration, cfg.logdir)  # stops on NaN before a save
            if logging:
                log.train(run.iteration, window, time.monotonic() - window_start,
                          run.g.optimizer.param_groups[0]["lr"], deadline, cfg.log_every)
                window, window_start = [], time.monotonic()
            if validating:
                validate(run)
            if saving:
                checkpoint.save_run(run, "last")
            stopped = dist.stop_together(stop.get("name") or (
                "max_minutes" if time.monotonic() > deadline else None), logging, run.device)
            if stopped:
                break
    if window:
        read_back(window, run.iteration, cfg.logdir)
        log.train(run.iteration, window, time.monotonic() - window_start,
                  run.g.optimizer.param_groups[0]["lr"], deadline, cfg.log_every)
    if stopped not in (None, "max_minutes"):  # a signal: save, unfinished, and say how to go on
        checkpoint.save_run(run, "last")
        log.close(f"stopped by {stopped} at iteration {run.iteration}: last.pt saved; run the "
                  "same command again to resume")
        dist.barrier()
        raise Interrupted(stop.get("signum", signal.SIGTERM), log.last_said)
    if run.val_set is not None and run.iteration % cfg.validation.every != 0:
        validate(run)
    checkpoint.save_run(run, "last", finished=True)
    log.close()
    dist.barrier()
    return {"iterations": run.iteration, "minutes": (time.monotonic() - started) / 60,
            "stopped_by_time": stopped == "max_minutes", "best_val_psnr_y": run.best_psnr,
            "logdir": cfg.logdir, "notes": list(log.notes)}


def validate(run: Run) -> None:
    """Rank 0 scores the EMA weights (or G's); every rank gets the Y-PSNR, so plateau
    schedules and best.pt decide alike on all of them."""
    psnr_y, scores, images = 0.0, {}, {}
    if run.dist.is_main:
        rows = score_model(run.ema.module if run.ema else run.g.module, run.val_set,
                           max_images=run.cfg.validation.max_images, keep=images)
        scores = {k: v for k, v in summarize(rows).items() if k != "name"}
        psnr_y = scores["psnr_y"]
    psnr_y = run.dist.broadcast(psnr_y, run.device)  # the others wait here for rank 0
    for net in run.networks().values():
        net.schedule(psnr_y)
    if psnr_y > run.best_psnr:
        run.best_psnr = psnr_y
        checkpoint.save_run(run, "best")
    run.log.validation(run.iteration, run.cfg.validation.name, scores, run.best_psnr,
                       dict(list(images.items())[:3]))
    run.dist.barrier()

"""Config names -> the objects they build (one plain table per kind), and :func:`run`, which
builds everything a training run needs in order. A wrong name or parameter is a
:class:`ConfigError` naming the key and what would be valid. The README's config table lists
the names, among them those kept from the PyTorch SRGAN project this repository grew from."""
from __future__ import annotations

import copy
import functools
import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from srlib import checkpoint
from srlib.config import Config, ConfigError, LossTerm, check_choice
from srlib.data.datasets import BenchmarkDataset, PairedPatchDataset
from srlib.data.device_batches import DeviceBatches
from srlib.distributed import DistInfo, pick_device
from srlib.losses import AdversarialLoss, CombinedLoss, PerceptualLoss, PixelLoss
from srlib.models import Discriminator, MSRResNet, SRResNet, VGGStyleDiscriminator

MODELS = {
    "srresnet": SRResNet,    # Ledig et al. 2017, with batch norm
    "msrresnet": MSRResNet,  # BasicSR's modified SRResNet: no BN, bilinear global residual
    "srgan": SRResNet,       # the SRGAN generator is the paper's SRResNet
}
# the SRGAN paper's; BasicSR's (ESRGAN, MSRGAN), whose weights load as they are
DISCRIMINATORS = {"srgan": Discriminator, "vgg_style": VGGStyleDiscriminator}

LOSSES = {
    "l1": functools.partial(PixelLoss, "l1"),
    "mse": functools.partial(PixelLoss, "mse"),
    "perceptual": PerceptualLoss,
    "adversarial": AdversarialLoss,  # needs solver "gan": the discriminator's step uses it
}


def _fused_on_gpu(optimizer_class):
    """The optimiser, fused into one kernel for the whole update when the parameters live
    on a GPU (unless the config says otherwise)."""
    def make(params, **kw):
        params = list(params)
        fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
        return optimizer_class(params, **{**fused, **kw})
    return make


OPTIMIZERS = {"adam": _fused_on_gpu(torch.optim.Adam), "adamw": _fused_on_gpu(torch.optim.AdamW)}


# Each takes (optimizer, total_iterations, **params). All but "reduce" step once per
# iteration; "reduce" steps on the validation Y-PSNR (it lowers the lr when PSNR stalls).
def _reduce(optimizer, total, **kw):
    kw = {"mode": "max", "factor": 0.5, "patience": 5, **kw}
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kw)


def _cyclic(optimizer, total, **kw):
    base = optimizer.param_groups[0]["lr"]
    kw = {"base_lr": base / 10, "max_lr": base, "step_size_up": max(1, total // 8),
          "cycle_momentum": False, **kw}
    return torch.optim.lr_scheduler.CyclicLR(optimizer, **kw)


def _cosine(optimizer, total, **kw):
    if min(kw.get("T_0", 1), kw.get("T_max", 1)) < 1 or kw.get("eta_min", 0) < 0:
        raise ValueError(f"T_0 and T_max must be >= 1 and eta_min >= 0, got {kw}")
    if "T_0" in kw:  # cosine with restarts, as in BasicSR's MSRResNet recipe
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, **kw)
    kw = {"T_max": max(1, total), "eta_min": 1e-7, **kw}
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **kw)


def _multistep(optimizer, total, **kw):
    kw = {"milestones": [total // 2], "gamma": 0.1, **kw}
    if sorted(set(kw["milestones"])) != list(kw["milestones"]) or not 0 < kw["gamma"] <= 1:
        raise ValueError(f"milestones must increase and gamma be in (0, 1], got {kw}")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, **kw)


SCHEDULERS = {"reduce": _reduce, "cyclic": _cyclic, "cosine": _cosine, "multistep": _multistep}

# Training sets: a folder of HR images (LR made on the fly), or a prepared DIV2K/DF2K folder.
TRAIN_DATASETS = {"t91": "folder", "folder": "folder", "div2k": "prepared", "df2k": "prepared"}
EVAL_DATASETS = ("holdout", "set5", "folder")  # only labels logs; any folder of HR images works


def check(cfg: Config) -> None:
    """Check every name in ``cfg`` against the tables, before anything is built."""
    d = cfg.discriminator
    named = [(cfg.model, MODELS, "model"), (cfg.dataset.name, TRAIN_DATASETS, "dataset.name"),
             (cfg.optimizer.name, OPTIMIZERS, "optimizer.name"),
             (cfg.scheduler and cfg.scheduler.name, SCHEDULERS, "scheduler.name"),
             (cfg.validation and cfg.validation.name, EVAL_DATASETS, "validation.name"),
             (d and d.name, DISCRIMINATORS, "discriminator.name"),
             (d and d.optimizer.name, OPTIMIZERS, "discriminator.optimizer.name"),
             (d and d.scheduler and d.scheduler.name, SCHEDULERS, "discriminator.scheduler.name")]
    named += [(t.name, LOSSES, f"loss_fn[{i}].name") for i, t in enumerate(cfg.loss_fn)]
    for name, table, key in named:
        if name is not None:
            check_choice(name, table, key)


def _call(builder, key: str, *args, **params):
    """``builder(*args, **params)``, with a parameter typo or a refused value reported as one
    line naming the config key and the parameters that exist."""
    target = builder.func if isinstance(builder, functools.partial) else builder
    accepted = inspect.signature(target).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            valid = [n for n in accepted if n not in ("self", "scale", "kind")]
            raise ConfigError(f'key "{key}": unknown parameter "{unknown[0]}"; '
                              f"valid: {', '.join(valid)}")
    try:
        return builder(*args, **params)
    except (TypeError, ValueError, RuntimeError) as err:  # e.g. a negative width
        raise ConfigError(f'key "{key}": {str(err).splitlines()[0]}') from None


def model(cfg: Config) -> torch.nn.Module:
    return _call(MODELS[cfg.model], "model_params", scale=cfg.scale, **cfg.model_params)


def discriminator(cfg: Config) -> torch.nn.Module:
    d = cfg.discriminator  # it judges HR patches: its input size is the patch size
    return _call(DISCRIMINATORS[d.name], "discriminator.params",
                 **{"input_size": cfg.patch_size, **d.params})


def optimizer(opt_cfg, parameters, key: str = "optimizer") -> torch.optim.Optimizer:
    return _call(OPTIMIZERS[opt_cfg.name], f"{key}.params", parameters, **opt_cfg.params)


def scheduler(sched_cfg, opt, total_iterations: int, key: str = "scheduler"):
    if sched_cfg is None:
        return None
    return _call(SCHEDULERS[sched_cfg.name], f"{key}.params", opt, total_iterations,
                 **sched_cfg.params)


def loss_term(term: LossTerm, cfg: Config, key: str = "loss_fn") -> torch.nn.Module:
    """One ``loss_fn`` entry as a module, exactly as training builds it."""
    params = dict(term.params)
    if "input_range" in params:  # JSON has lists, the loss wants a tuple
        params["input_range"] = tuple(params["input_range"])
    if term.name == "perceptual":
        params.setdefault("allow_random_weights", cfg.allow_random_vgg)
    return _call(LOSSES[term.name], f"{key}.params", **params)


def content_loss(cfg: Config) -> CombinedLoss:
    """The weighted sum of every term but the adversarial one (which needs D)."""
    return CombinedLoss([(t.name, t.weight, loss_term(t, cfg, f"loss_fn[{i}]"))
                         for i, t in enumerate(cfg.loss_fn) if t.name != "adversarial"])


def adversarial(cfg: Config) -> tuple[float, AdversarialLoss]:
    """(weight, module) of the config's adversarial term."""
    i, term = next((i, t) for i, t in enumerate(cfg.loss_fn) if t.name == "adversarial")
    return term.weight, loss_term(term, cfg, f"loss_fn[{i}]")


def train_dataset(cfg: Config, dist: DistInfo, progress: bool = False) -> PairedPatchDataset:
    d = cfg.dataset
    if TRAIN_DATASETS[d.name] == "prepared" and not (Path(d.root) / "HR").is_dir():
        raise FileNotFoundError(
            f'dataset "{d.name}": no prepared sub-images in {d.root} (expected {d.root}/HR and '
            f"LR_x{cfg.scale}): run `srlib prepare {d.name} --root {Path(d.root).parent}` first")
    with dist.host_leader_first():  # it decodes the set into the cache file the others map
        return PairedPatchDataset(d.root, patch_size=cfg.patch_size, scale=cfg.scale,
                                  cache=d.cache, skip_corrupt=d.skip_corrupt,
                                  progress=progress and dist.is_main)


def eval_dataset(name: str, root, scale: int = 4) -> BenchmarkDataset:
    if not Path(root).is_dir():
        raise FileNotFoundError(f"evaluation set {name}: folder not found: {root}")
    return BenchmarkDataset(root, scale=scale, name=name)


class EMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every step; buffers (batch-norm
    statistics) are copied. One fused foreach call over tensor lists gathered once: torch's
    ``AveragedModel`` walks the module tree each step, which costs more than a GPU step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
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
        self.updates += 1


@dataclass
class Run:
    """Everything a step and the loop use, built once by :func:`run`."""

    cfg: Config
    dist: DistInfo
    device: torch.device
    model: torch.nn.Module           # the generator; its state is what checkpoints hold
    net: torch.nn.Module             # the same weights as called in a step (DDP, compiled)
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    loss: torch.nn.Module            # content terms: pixel, perceptual
    train_set: torch.utils.data.Dataset
    total: int                       # iterations this run trains for
    precision: str = "fp32"          # what autocast uses: the config's, or fp32 on a CPU
    ema: EMA | None = None
    d: torch.nn.Module | None = None  # GAN only: discriminator, its wrapper, optimiser, ...
    d_net: torch.nn.Module | None = None
    d_optimizer: torch.optim.Optimizer | None = None
    d_scheduler: object = None
    d_scaler: torch.amp.GradScaler | None = None
    adversarial: torch.nn.Module | None = None
    adv_weight: float = 0.0
    device_batches: DeviceBatches | None = None
    iteration: int = 0
    best_psnr: float = -math.inf
    notes: list[str] = field(default_factory=list)
    progress: bool = True            # a progress bar; else a status line now and then
    writer: object = None            # TensorBoard's SummaryWriter, when it is installed


def run(cfg: Config, device: str | None = None, dist: DistInfo | None = None,
        progress: bool = True) -> Run:
    """Everything a run needs, in order: G (from generator_path), optimiser, data, schedule,
    losses, then D for a GAN, then the checkpoint being resumed."""
    check(cfg)
    dist = dist or DistInfo()
    batch = cfg.dataset.params.batch_size
    if batch % dist.world_size:
        raise ConfigError(
            f'key "dataset.params.batch_size": {batch} does not split evenly over the '
            f"{dist.world_size} processes of this torchrun run (each rank takes an equal share "
            f"of the global batch); use a multiple of {dist.world_size}")
    device = torch.device(device or pick_device(cfg.device, dist.local_rank))
    torch.manual_seed(cfg.seed)
    g = model(cfg).to(device)
    if cfg.generator_path and not cfg.checkpoint:  # before the EMA copy is made from it
        # the trained weights, not their EMA: what BasicSR's GAN recipes start from
        weights = checkpoint.read_generator(cfg.generator_path, prefer_ema=False)[1]
        checkpoint.load_weights(g, weights, f'"generator_path" {cfg.generator_path}')
    if cfg.channels_last:
        g = g.to(memory_format=torch.channels_last)
    net = dist.wrap(g)  # DDP when distributed, G otherwise
    gpu, notes = device.type == "cuda", []
    if cfg.compile and gpu:  # the same weights: checkpoints still save g's state
        net = torch.compile(net, mode="default" if cfg.compile is True else cfg.compile)
    if not gpu and (cfg.compile or cfg.precision != "fp32"):  # GPU settings of a full config
        notes.append(f"on {device.type}, compile={json.dumps(cfg.compile)} and precision="
                     f"{cfg.precision} are GPU settings: this run uses eager fp32")
    g_opt = optimizer(cfg.optimizer, g.parameters())
    data = train_dataset(cfg, dist, progress)
    total = cfg.iterations or (cfg.epochs * math.ceil(len(data) / batch)
                               if cfg.epochs else 10**9)  # else bounded by max_minutes only
    r = Run(cfg=cfg, dist=dist, device=device, model=g, net=net, optimizer=g_opt,
            scheduler=scheduler(cfg.scheduler, g_opt, total),
            precision=cfg.precision if gpu else "fp32", notes=notes,
            scaler=torch.amp.GradScaler(device.type, enabled=gpu and cfg.precision == "fp16"),
            loss=content_loss(cfg).to(device), train_set=data, total=total,
            ema=EMA(g, cfg.ema_decay) if cfg.ema_decay else None, progress=progress)
    if cfg.dataset.on_device:  # the whole set as uint8 on the device (see its module)
        r.device_batches = DeviceBatches(data, device, progress=progress and dist.is_main)
    if any(getattr(m, "random_weights", False) for m in r.loss.terms.values()):
        r.notes.append("VGG19 weights are RANDOM (pretrained ones could not be loaded and the "
                       "config sets allow_random_vgg): perceptual-loss values and textures "
                       "are not meaningful")
    if cfg.solver == "gan":
        r.adv_weight, r.adversarial = adversarial(cfg)
        r.d = discriminator(cfg).to(device)
        if cfg.channels_last:
            r.d = r.d.to(memory_format=torch.channels_last)
        r.d_net = dist.wrap(r.d)
        r.d_optimizer = optimizer(cfg.discriminator.optimizer, r.d.parameters(),
                                  "discriminator.optimizer")
        r.d_scheduler = scheduler(cfg.discriminator.scheduler, r.d_optimizer, total,
                                  "discriminator.scheduler")
        r.d_scaler = torch.amp.GradScaler(device.type, enabled=r.precision == "fp16")
        if not cfg.generator_path and not cfg.checkpoint:
            r.notes.append("GAN generator starts from random weights (no generator_path); "
                           "SRGAN is meant to start from a trained SRResNet")
    if cfg.checkpoint:
        checkpoint.restore(r, cfg.checkpoint)
    return r

"""Config names -> the objects they build, one plain table per kind, and one function per kind
that builds from it. A wrong name, an unknown parameter, a value of the wrong type or one the
constructor refuses is a :class:`ConfigError` naming the key and what would be valid; anything
else a constructor raises is a bug and stays the traceback it is. The README's config table
lists the names, among them those kept from the PyTorch SRGAN project this repository grew
from. ``srlib.train.make_run`` puts the pieces together."""
from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from pathlib import Path

import torch

from srlib import checkpoint
from srlib.config import Config, ConfigError, LossTerm, check_choice
from srlib.data.datasets import BenchmarkDataset, PairedPatchDataset
from srlib.distributed import DistInfo
from srlib.losses import AdversarialLoss, CombinedLoss, PerceptualLoss, PixelLoss
from srlib.models import MSRResNet, SRGANDiscriminator, SRResNet, VGGStyleDiscriminator
from srlib.typed_json import coerce

MODELS = {
    "srresnet": SRResNet,    # Ledig et al. 2017, with batch norm
    "msrresnet": MSRResNet,  # BasicSR's modified SRResNet: no BN, bilinear global residual
    "srgan": SRResNet,       # the SRGAN generator is the paper's SRResNet
}
# the SRGAN paper's; BasicSR's (ESRGAN, MSRGAN), whose weights load as they are
DISCRIMINATORS = {"srgan": SRGANDiscriminator, "vgg_style": VGGStyleDiscriminator}

LOSSES = {
    "l1": functools.partial(PixelLoss, "l1"),
    "mse": functools.partial(PixelLoss, "mse"),
    "perceptual": PerceptualLoss,
    "adversarial": AdversarialLoss,  # needs solver "gan": the discriminator's step uses it
}


def _fused_on_gpu(optimizer_class):
    """The optimiser, fused into one kernel for the whole update when the parameters live
    on a GPU (unless the config says otherwise)."""
    @functools.wraps(optimizer_class)
    def make(params, **kw):
        params = list(params)
        fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
        return optimizer_class(params, **{**fused, **kw})
    return make


OPTIMIZERS = {"adam": _fused_on_gpu(torch.optim.Adam), "adamw": _fused_on_gpu(torch.optim.AdamW)}

_SCHED = torch.optim.lr_scheduler


# Each takes (optimizer, total_iterations, **params). All but "reduce" step once per
# iteration; "reduce" steps on the validation Y-PSNR (it lowers the lr when PSNR stalls).
def _reduce(optimizer, total, **kw):
    return _SCHED.ReduceLROnPlateau(optimizer, **_accepted(_SCHED.ReduceLROnPlateau, {
        "mode": "max", "factor": 0.5, "patience": 5, **kw}))


def _cyclic(optimizer, total, **kw):
    base = optimizer.param_groups[0]["lr"]
    return _SCHED.CyclicLR(optimizer, **_accepted(_SCHED.CyclicLR, {
        "base_lr": base / 10, "max_lr": base, "step_size_up": max(1, total // 8),
        "cycle_momentum": False, **kw}))


def _cosine(optimizer, total, **kw):
    if min(kw.get("T_0", 1), kw.get("T_max", 1)) < 1 or kw.get("eta_min", 0) < 0:
        raise ConfigError(f"T_0 and T_max must be >= 1 and eta_min >= 0, got {kw}")
    if "T_0" in kw:  # cosine with restarts, as in BasicSR's MSRResNet recipe
        cls = _SCHED.CosineAnnealingWarmRestarts
        return cls(optimizer, **_accepted(cls, kw))
    kw = {"T_max": max(1, total), "eta_min": 1e-7, **kw}
    return _SCHED.CosineAnnealingLR(optimizer, **_accepted(_SCHED.CosineAnnealingLR, kw))


def _multistep(optimizer, total, **kw):
    kw = {"milestones": [total // 2], "gamma": 0.1, **kw}
    if sorted(set(kw["milestones"])) != list(kw["milestones"]) or not 0 < kw["gamma"] <= 1:
        raise ConfigError(f"milestones must increase and gamma be in (0, 1], got {kw}")
    return _SCHED.MultiStepLR(optimizer, **_accepted(_SCHED.MultiStepLR, kw))


SCHEDULERS = {"reduce": _reduce, "cyclic": _cyclic, "cosine": _cosine, "multistep": _multistep}

# Training sets: a folder of HR images (LR made on the fly), or a prepared DIV2K/DF2K folder.
TRAIN_DATASETS = {"t91": "folder", "folder": "folder", "div2k": "prepared", "df2k": "prepared"}
# Sizes and counts inside params: integers >= 1 (a negative width is the user's typo, and
# torch's own error for it would be a traceback about tensor dimensions).
_POSITIVE = ("num_feat", "num_block", "in_channels", "out_channels", "input_size")


def check(cfg: Config, world_size: int = 1) -> None:
    """Check every name in ``cfg`` against the tables, and the batch split over the ranks of a
    torchrun run, before anything is built."""
    batch = cfg.dataset.params.batch_size
    if batch % world_size:
        raise ConfigError(f'key "dataset.params.batch_size": {batch} does not split evenly over '
                          f"the {world_size} processes of this torchrun run (each rank takes an "
                          f"equal share of the global batch); use a multiple of {world_size}")
    d = cfg.discriminator
    named = [(cfg.model, MODELS, "model"), (cfg.dataset.name, TRAIN_DATASETS, "dataset.name"),
             (cfg.optimizer.name, OPTIMIZERS, "optimizer.name"),
             (cfg.scheduler and cfg.scheduler.name, SCHEDULERS, "scheduler.name"),
             (d and d.name, DISCRIMINATORS, "discriminator.name"),
             (d and d.optimizer.name, OPTIMIZERS, "discriminator.optimizer.name"),
             (d and d.scheduler and d.scheduler.name, SCHEDULERS, "discriminator.scheduler.name")]
    named += [(t.name, LOSSES, f"loss_fn[{i}].name") for i, t in enumerate(cfg.loss_fn)]
    for name, table, key in named:
        if name is not None:
            check_choice(name, table, key)
    if all(t.name == "adversarial" for t in cfg.loss_fn):
        raise ConfigError('key "loss_fn": give at least one content term (l1, mse, perceptual)')
    adversarial = sum(t.name == "adversarial" for t in cfg.loss_fn)
    if adversarial > 1 or (cfg.solver == "gan") != (adversarial == 1):
        raise ConfigError(f'key "loss_fn": solver "gan" needs an "adversarial" term, and an '
                          f'"adversarial" term needs "solver": "gan" (got solver "{cfg.solver}" '
                          f"and {adversarial} adversarial terms)")


def _accepted(target, params: dict) -> dict:
    """``params`` if ``target`` (a class or function) takes each of them, with the types its
    annotations name; else a ConfigError naming the first it does not take."""
    accepted = inspect.signature(target).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            valid = [n for n in accepted if n not in ("self", "optimizer", "params", "scale")]
            raise ConfigError(f'unknown parameter "{unknown[0]}"; valid: {", ".join(valid)}')
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except (NameError, TypeError):  # torch's own classes: annotations it cannot resolve
        hints = {}
    for name, value in params.items():
        if name in _POSITIVE and not (isinstance(value, int) and value >= 1):
            raise ConfigError(f'key "{name}": must be an integer >= 1, got {value!r}')
        if hints.get(name) in (int, float, bool, str):
            params[name] = coerce(value, hints[name], name)
    return params


def _call(builder, key: str, *args, **params):
    """``builder(*args, **params)``; a mistake in ``params`` (see the module docstring) is
    reported as one line naming the config key."""
    try:
        target = builder.func if isinstance(builder, functools.partial) else builder
        bound = inspect.signature(builder).parameters  # a partial's bound arguments are gone
        if target is not builder and not set(params) <= set(bound):
            raise ConfigError(f'unknown parameter "{sorted(set(params) - set(bound))[0]}"')
        return builder(*args, **_accepted(target, dict(params)))
    except ValueError as err:  # torch checks an optimiser's or a schedule's values this way
        torch_check = builder in (*OPTIMIZERS.values(), *SCHEDULERS.values())
        if not (isinstance(err, ConfigError) or torch_check):
            raise
        message = str(err).splitlines()[0]
        if message.startswith('key "'):  # the builder named its own parameter: nest it
            raise ConfigError(re.sub(r'^key "', f'key "{key}.', message)) from None
        raise ConfigError(f'key "{key}": {message}') from None


def generator(name: str, scale: int, params: dict, key: str = "model_params") -> torch.nn.Module:
    """The generator a config (or a checkpoint's record of one) names."""
    return _call(MODELS[name], key, scale=scale, **params)


def model(cfg: Config) -> torch.nn.Module:
    """The config's generator; a new run's starts from ``generator_path`` when there is one,
    with its trained weights, not their EMA: what BasicSR's GAN recipes start from."""
    g = generator(cfg.model, cfg.scale, cfg.model_params)
    if cfg.generator_path and not cfg.checkpoint:
        weights = checkpoint.read_generator(cfg.generator_path, prefer_ema=False)[1]
        checkpoint.load_weights(g, weights, f'"generator_path" {cfg.generator_path}')
    return g


def notes(cfg: Config, device: torch.device, content: CombinedLoss) -> list[str]:
    """What a person must know about a run before trusting its numbers: a full config's GPU
    settings on a CPU, random VGG weights, a GAN from scratch."""
    gpu_only = [f"{key}={json.dumps(value)}" for key, value, cpu in (
        ("precision", cfg.precision, ("fp32",)), ("compile", cfg.compile, (False, True, "default")))
        if value not in cpu]
    said = [f"on {device.type}, {' and '.join(gpu_only)} are GPU settings: this run uses eager "
            "fp32"] if device.type != "cuda" and gpu_only else []
    if any(getattr(m, "random_weights", False) for m in content.terms.values()):
        said.append("VGG19 weights are RANDOM (pretrained ones could not be loaded and the config "
                    "sets allow_random_vgg): perceptual-loss values and textures are not "
                    "meaningful")
    if cfg.solver == "gan" and not cfg.generator_path and not cfg.checkpoint:
        said.append("GAN generator starts from random weights (no generator_path); SRGAN is "
                    "meant to start from a trained SRResNet")
    return said


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


def eval_dataset(root, scale: int = 4, name: str | None = None) -> BenchmarkDataset:
    if not Path(root).is_dir():
        raise FileNotFoundError(f"evaluation set {name or root}: folder not found: {root}")
    return BenchmarkDataset(root, scale=scale, name=name)

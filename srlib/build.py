"""Config names -> the objects they build, one plain table per kind, and one function per kind
that builds from it (``srlib.train.make_run`` puts them together). A wrong name, an unknown
parameter, a value of the wrong type or one the constructor refuses is a :class:`ConfigError`
naming the key and what would be valid; anything else a constructor raises is a bug and stays
the traceback it is. The README's config table lists the names (some are PyTorch SRGAN's)."""
import functools
import inspect
import json
import re
import typing
from pathlib import Path

import torch

from srlib import checkpoint
from srlib.config import Config, ConfigError, LossTerm, check_choice, lookup
from srlib.data.datasets import BenchmarkDataset, PairedPatchDataset
from srlib.distributed import DistInfo
from srlib.losses import AdversarialLoss, CombinedLoss, PerceptualLoss, PixelLoss
from srlib.models import MSRResNet, SRGANDiscriminator, SRResNet, VGGStyleDiscriminator
from srlib.typed_json import coerce

MODELS = {"srresnet": SRResNet,    # Ledig et al. 2017, with batch norm
          "msrresnet": MSRResNet,  # BasicSR's modified SRResNet: no BN, bilinear global residual
          "srgan": SRResNet}       # the SRGAN generator is the paper's SRResNet
# the SRGAN paper's; BasicSR's (ESRGAN, MSRGAN), whose weights load as they are
DISCRIMINATORS = {"srgan": SRGANDiscriminator, "vgg_style": VGGStyleDiscriminator}
LOSSES = {"l1": functools.partial(PixelLoss, "l1"), "mse": functools.partial(PixelLoss, "mse"),
          "perceptual": PerceptualLoss,
          "adversarial": AdversarialLoss}  # needs solver "gan": the discriminator's step uses it


def _fused_on_gpu(optimizer_class):
    """The optimiser as one fused kernel per update on a GPU, unless the config says otherwise."""
    @functools.wraps(optimizer_class)
    def make(params, **kw):
        params = list(params)
        fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
        return optimizer_class(params, **{**fused, **kw})
    return make


OPTIMIZERS = {"adam": _fused_on_gpu(torch.optim.Adam), "adamw": _fused_on_gpu(torch.optim.AdamW)}
_SCHED = torch.optim.lr_scheduler
# name -> (torch class, its defaults for a run of `total` iterations at learning rate `lr`). All
# but "reduce" step once per iteration; "reduce" steps on the validation Y-PSNR (it lowers the
# lr when PSNR stalls); "cosine" with `T_0` restarts every T_0 steps (BasicSR's MSRResNet).
SCHEDULERS = {
    "reduce": lambda total, lr: (_SCHED.ReduceLROnPlateau,
                                 {"mode": "max", "factor": 0.5, "patience": 5}),
    "cyclic": lambda total, lr: (_SCHED.CyclicLR, {"base_lr": lr / 10, "max_lr": lr,
                                 "step_size_up": max(1, total // 8), "cycle_momentum": False}),
    "cosine": lambda total, lr: (_SCHED.CosineAnnealingLR, {"T_max": max(1, total),
                                                            "eta_min": 1e-7}),
    "multistep": lambda total, lr: (_SCHED.MultiStepLR, {"milestones": [total // 2], "gamma": 0.1}),
}
# values torch accepts without a word, each one the user's typo
_RANGES = {"T_0": (lambda v: v >= 1, ">= 1"), "T_max": (lambda v: v >= 1, ">= 1"),
           "eta_min": (lambda v: v >= 0, ">= 0"), "gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
           "milestones": (lambda v: sorted(set(v)) == list(v), "increasing")}

# Training sets: a folder of HR images (LR made on the fly), or a prepared DIV2K/DF2K folder.
TRAIN_DATASETS = {"t91": "folder", "folder": "folder", "div2k": "prepared", "df2k": "prepared"}
# Sizes and counts in params: integers >= 1 (torch's own error is a traceback about dimensions)
_POSITIVE = ("num_feat", "num_block", "in_channels", "out_channels", "input_size")


def check(cfg: Config, world_size: int = 1) -> None:
    """Before anything is built: the names against the tables, the batch split over the ranks."""
    batch = cfg.dataset.params.batch_size
    if batch % world_size:
        raise ConfigError(f'key "dataset.params.batch_size": {batch} does not split evenly over '
                          f"the {world_size} processes of this torchrun run (each rank takes an "
                          f"equal share of the global batch); use a multiple of {world_size}")
    tables = {"model": MODELS, "dataset.name": TRAIN_DATASETS, "optimizer.name": OPTIMIZERS,
              "scheduler.name": SCHEDULERS, "discriminator.name": DISCRIMINATORS,
              "discriminator.optimizer.name": OPTIMIZERS,
              "discriminator.scheduler.name": SCHEDULERS}
    for key, table in tables.items():
        if lookup(cfg, key) is not None:  # None: an optional section the config leaves out
            check_choice(lookup(cfg, key), table, key)
    for i, term in enumerate(cfg.loss_fn):
        check_choice(term.name, LOSSES, f"loss_fn[{i}].name")
    if all(t.name == "adversarial" for t in cfg.loss_fn):
        raise ConfigError('key "loss_fn": give at least one content term (l1, mse, perceptual)')
    adversarial = sum(t.name == "adversarial" for t in cfg.loss_fn)
    if adversarial > 1 or (cfg.solver == "gan") != (adversarial == 1):
        raise ConfigError(f'key "loss_fn": solver "gan" needs an "adversarial" term, and an '
                          f'"adversarial" term needs "solver": "gan" (got solver "{cfg.solver}" '
                          f"and {adversarial} adversarial terms)")


def _accepted(target, params: dict) -> dict:
    """``params`` as the types ``target`` annotates; a ConfigError names one it does not take."""
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
    """``builder(*args, **params)``; a mistake in ``params`` is one line naming the config key."""
    try:
        target = builder.func if isinstance(builder, functools.partial) else builder
        bound = inspect.signature(builder).parameters  # a partial's bound arguments are gone
        if target is not builder and not set(params) <= set(bound):
            raise ConfigError(f'unknown parameter "{sorted(set(params) - set(bound))[0]}"')
        return builder(*args, **_accepted(target, dict(params)))
    except ValueError as err:  # torch's refusal of a value (OPTIMIZERS' wrappers keep its module)
        if not (isinstance(err, ConfigError) or builder.__module__.startswith("torch")):
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
    cls, defaults = SCHEDULERS[sched_cfg.name](total_iterations, opt.param_groups[0]["lr"])
    if sched_cfg.name == "cosine" and "T_0" in sched_cfg.params:
        cls, defaults = _SCHED.CosineAnnealingWarmRestarts, {}
    params = {**defaults, **sched_cfg.params}
    for name, (ok, valid) in _RANGES.items():
        if name in params and not ok(params[name]):
            raise ConfigError(f'key "{key}.params.{name}": must be {valid}, got '
                              f"{json.dumps(params[name])}")
    return _call(cls, f"{key}.params", opt, **params)


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
    i, term = next((i, t) for i, t in enumerate(cfg.loss_fn) if t.name == "adversarial")
    return term.weight, loss_term(term, cfg, f"loss_fn[{i}]")


def train_dataset(cfg: Config, dist: DistInfo, progress: bool = False) -> PairedPatchDataset:
    d = cfg.dataset
    if TRAIN_DATASETS[d.name] == "prepared" and not (Path(d.root) / "HR").is_dir():
        raise FileNotFoundError(
            f'dataset "{d.name}": no prepared sub-images in {d.root} (expected {d.root}/HR and '
            f"LR_x{cfg.scale}): run `srlib prepare {d.name} --root {Path(d.root).parent}` first")
    with dist.host_leader_first():  # it decodes the set into the cache file the others map
        return PairedPatchDataset(d.root, patch_size=cfg.patch_size, scale=cfg.scale, cache=d.cache,
                                  skip_corrupt=d.skip_corrupt, progress=progress and dist.is_main)


def eval_dataset(root, scale: int = 4, name: str | None = None) -> BenchmarkDataset:
    if not Path(root).is_dir():
        raise FileNotFoundError(f"evaluation set {name or root}: folder not found: {root}")
    return BenchmarkDataset(root, scale=scale, name=name)

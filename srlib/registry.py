"""The one place that maps every config option name to what builds it.

Adding an option is one entry in one of the tables below. Builders import lazily so that
reading a config (which only needs the names) stays cheap and free of import cycles.
"""
from __future__ import annotations

from pathlib import Path


# --------------------------------------------------------------------------- models

def _srresnet(**params):
    from srlib.models import SRResNet
    return SRResNet(**params)


def _msrresnet(**params):
    from srlib.models import MSRResNet
    return MSRResNet(**params)


def _srgan_discriminator(**params):
    from srlib.models import Discriminator
    return Discriminator(**params)


MODELS = {
    "srresnet": _srresnet,    # Ledig et al. 2017, with batch norm
    "msrresnet": _msrresnet,  # BasicSR's modified SRResNet: no BN, bilinear global residual
    "srgan": _srresnet,       # the SRGAN generator is the paper's SRResNet
}

DISCRIMINATORS = {"srgan": _srgan_discriminator}


# --------------------------------------------------------------------------- losses

def _pixel(kind):
    def build(**params):
        from srlib.losses import PixelLoss
        return PixelLoss(kind, **params)
    return build


def _perceptual(**params):
    from srlib.losses import PerceptualLoss
    return PerceptualLoss(**params)


def _adversarial(**params):
    from srlib.losses import AdversarialLoss
    return AdversarialLoss(**params)


LOSSES = {
    "mse": _pixel("mse"),
    "l1": _pixel("l1"),
    "perceptual": _perceptual,
    "adversarial": _adversarial,  # used by the GAN solver with the discriminator
}


# --------------------------------------------------------------------------- optimisers

def _on_gpu(params, kw: dict):
    """Parameters as a list, and ``fused=True`` when they all live on a GPU and the config
    does not say otherwise: one kernel for the whole update instead of several per tensor."""
    params = list(params)
    if "fused" not in kw and params and all(p.is_cuda for p in params):
        kw = {**kw, "fused": True}
    return params, kw


def _adam(params, **kw):
    import torch
    params, kw = _on_gpu(params, kw)
    return torch.optim.Adam(params, **kw)


def _adamw(params, **kw):
    import torch
    params, kw = _on_gpu(params, kw)
    return torch.optim.AdamW(params, **kw)


OPTIMIZERS = {"adam": _adam, "adamw": _adamw}


# --------------------------------------------------------------------------- schedulers
# Each takes (optimizer, total_iterations, **params). All but "reduce" step once per
# iteration; "reduce" steps on validation Y-PSNR (it lowers the lr when PSNR stalls).

def _reduce(optimizer, total, **kw):
    import torch
    kw = {"mode": "max", "factor": 0.5, "patience": 5, **kw}
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kw)


def _cyclic(optimizer, total, **kw):
    import torch
    base = optimizer.param_groups[0]["lr"]
    kw = {"base_lr": base / 10, "max_lr": base, "step_size_up": max(1, total // 8),
          "cycle_momentum": False, **kw}
    return torch.optim.lr_scheduler.CyclicLR(optimizer, **kw)


def _cosine(optimizer, total, **kw):
    import torch
    if "T_0" in kw:  # cosine with restarts, as in BasicSR's MSRResNet recipe
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, **kw)
    kw = {"T_max": max(1, total), "eta_min": 1e-7, **kw}
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **kw)


def _multistep(optimizer, total, **kw):
    import torch
    kw = {"milestones": [total // 2], "gamma": 0.1, **kw}
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, **kw)


SCHEDULERS = {"reduce": _reduce, "cyclic": _cyclic, "cosine": _cosine, "multistep": _multistep}


# --------------------------------------------------------------------------- datasets

def _hr_folder(root, patch_size, scale, **kw):
    from srlib.data.datasets import PairedPatchDataset
    return PairedPatchDataset(root, patch_size=patch_size, scale=scale, **kw)


def _prepared(name):
    def build(root, patch_size, scale, **kw):
        if not (Path(root) / "HR").is_dir():
            raise FileNotFoundError(
                f'dataset "{name}": no prepared sub-images in {root} (expected {root}/HR and '
                f"{root}/LR_x{scale}). Run `srlib prepare {name} --root {Path(root).parent}` "
                "first; it downloads the archives (or uses ones you placed in data/downloads/).")
        return _hr_folder(root, patch_size, scale, **kw)
    return build


TRAIN_DATASETS = {
    "t91": _hr_folder,       # shipped sample (data/T91), the quick CPU path
    "folder": _hr_folder,    # any folder of HR images
    "div2k": _prepared("div2k"),
    "df2k": _prepared("df2k"),
}


def _benchmark(root, scale=4, name=None):
    from srlib.data.datasets import BenchmarkDataset
    if not Path(root).is_dir():
        raise FileNotFoundError(f"evaluation set {name or ''}: folder not found: {root}")
    return BenchmarkDataset(root, scale=scale, name=name)


EVAL_DATASETS = {name: _benchmark for name in
                 ("set5", "set14", "bsd100", "urban100", "div2k_valid", "folder")}


# --------------------------------------------------------------------------- solvers

def _std(config, **kw):
    from srlib.solvers.standard import StandardSolver
    return StandardSolver(config, **kw)


def _gan(config, **kw):
    from srlib.solvers.gan import GANSolver
    return GANSolver(config, **kw)


SOLVERS = {"std": _std, "gan": _gan}


# --------------------------------------------------------------------------- build helpers

def build_model(config):
    return MODELS[config.model](scale=config.scale, **config.model_params)


def build_discriminator(config):
    d = config.discriminator
    params = {"input_size": config.patch_size, **d.params}
    return DISCRIMINATORS[d.name](**params)


def build_optimizer(opt_config, parameters):
    return OPTIMIZERS[opt_config.name](parameters, **opt_config.params)


def build_scheduler(sched_config, optimizer, total_iterations):
    if sched_config is None:
        return None
    return SCHEDULERS[sched_config.name](optimizer, total_iterations, **sched_config.params)


def build_train_dataset(config):
    d = config.dataset
    # on_device decodes straight into device memory: no second decoded copy in host RAM
    return TRAIN_DATASETS[d.name](d.root, config.patch_size, config.scale,
                                  cache=d.cache and not d.on_device,
                                  skip_corrupt=d.skip_corrupt)


def build_eval_dataset(name, root, scale=4):
    return EVAL_DATASETS[name](root, scale=scale, name=name)


def build_solver(config, **kw):
    return SOLVERS[config.solver](config, **kw)

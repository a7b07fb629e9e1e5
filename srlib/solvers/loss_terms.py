"""Config ``loss_fn`` terms -> modules, through the registry (adversarial ones go to the GAN solver)."""
from __future__ import annotations

import warnings

from srlib import registry
from srlib.losses import CombinedLoss

RANDOM_VGG_NOTE = ("VGG19 weights are RANDOM (pretrained ones could not be loaded and the config "
                   "sets allow_random_vgg): perceptual-loss numbers and textures are not meaningful")


def build_term(term, config):
    params = dict(term.params)
    if "input_range" in params:  # JSON has lists, the loss wants a tuple
        params["input_range"] = tuple(params["input_range"])
    if term.name == "perceptual":
        params.setdefault("allow_random_weights", config.allow_random_vgg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said once, in the run's notes, instead
            return registry.LOSSES[term.name](**params)
    return registry.LOSSES[term.name](**params)


def build_content_loss(config) -> CombinedLoss:
    terms = [(t.name, t.weight, build_term(t, config))
             for t in config.loss_fn if t.name != "adversarial"]
    loss = CombinedLoss(terms)
    loss.notes = [RANDOM_VGG_NOTE] if any(getattr(m, "random_weights", False)
                                          for _, _, m in terms) else []
    return loss


def adversarial_term(config):
    """(weight, module) of the adversarial term."""
    term = next(t for t in config.loss_fn if t.name == "adversarial")
    return term.weight, build_term(term, config)

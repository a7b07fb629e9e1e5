"""Training losses: pixel, VGG perceptual, adversarial, and their weighted sum."""

from .adversarial import ADVERSARIAL_KINDS, AdversarialLoss
from .combined import CombinedLoss
from .perceptual import (
    VGG19_FILE,
    VGG19_URL,
    PerceptualLoss,
    PretrainedWeightsUnavailable,
    RandomVGGWeightsWarning,
    load_vgg19_state_dict,
    vgg_layer_end,
)
from .pixel import PixelLoss

__all__ = [
    "ADVERSARIAL_KINDS",
    "VGG19_FILE",
    "VGG19_URL",
    "AdversarialLoss",
    "CombinedLoss",
    "PerceptualLoss",
    "PixelLoss",
    "PretrainedWeightsUnavailable",
    "RandomVGGWeightsWarning",
    "load_vgg19_state_dict",
    "vgg_layer_end",
]

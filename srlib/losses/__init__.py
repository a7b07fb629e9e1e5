"""Training losses: pixel, VGG perceptual, adversarial, and their weighted sum."""

from .adversarial import ADVERSARIAL_KINDS, AdversarialLoss
from .combined import (
    ADVERSARIAL_NAMES,
    CONTENT_NAMES,
    CombinedLoss,
    build_content_loss,
    split_adversarial,
)
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
    "ADVERSARIAL_NAMES",
    "CONTENT_NAMES",
    "VGG19_FILE",
    "VGG19_URL",
    "AdversarialLoss",
    "CombinedLoss",
    "PerceptualLoss",
    "PixelLoss",
    "PretrainedWeightsUnavailable",
    "RandomVGGWeightsWarning",
    "build_content_loss",
    "load_vgg19_state_dict",
    "split_adversarial",
    "vgg_layer_end",
]

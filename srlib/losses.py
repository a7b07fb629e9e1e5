"""Training losses: pixel (L1/MSE), VGG19 perceptual, adversarial, and ``CombinedLoss``, the
weighted sum of the content ones; the GAN step calls the adversarial loss itself (it needs D)."""
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from srlib.config import check_choice
from srlib.pretrained import PretrainedWeightsUnavailable, load_vgg19

_CRITERIA = {"l1": F.l1_loss, "mse": F.mse_loss}


class PixelLoss(nn.Module):
    """Mean L1 or MSE: MSE is SRResNet's (what PSNR measures), L1 MSRResNet's (sharper, stabler)."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        check_choice(kind, _CRITERIA, "kind")
        self.kind = kind

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return _CRITERIA[self.kind](sr, hr)


def _layer_end(features: nn.Sequential, layer: str, before_activation: bool) -> int:
    """Exclusive end in ``vgg19().features`` of "vggIJ": after its conv or ReLU (vgg54: 35, 36)."""
    ends, block, conv = {}, 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
            ends[f"vgg{block}{conv}"] = index + 1 if before_activation else index + 2
    check_choice(layer, ends, "layer")
    return ends[layer]


class PerceptualLoss(nn.Module):
    """Distance between frozen VGG19 features of SR and HR in [0, 1] (SRGAN): ``layer`` "vggIJ" is
    block I's J-th conv, before its ReLU if ``before_activation`` (ESRGAN: denser features). The
    default ``rescale`` brings VGG54 MSE to pixel MSE's scale; random weights only if allowed."""

    def __init__(self, layer: str = "vgg54", before_activation: bool = True,
                 rescale: float = 1 / 12.75, criterion: str = "mse", pretrained: bool = True,
                 allow_random_weights: bool = False, weights_dir: str | None = None,
                 download_timeout: float = 5.0, seed: int = 0) -> None:
        super().__init__()
        from torchvision.models import vgg19  # 3 s of imports: only when the loss is built
        check_choice(criterion, _CRITERIA, "criterion")
        with torch.device("meta"):  # the layout only: the 120M-parameter classifier costs nothing
            features = vgg19().features
        self.layer_end = _layer_end(features, layer, before_activation)
        self.rescale, self.criterion = float(rescale), criterion
        self.vgg = features[: self.layer_end].to_empty(device="cpu")
        self.random_weights = True
        if pretrained:
            try:
                load_vgg19(self.vgg, weights_dir, download_timeout)
                self.random_weights = False
            except PretrainedWeightsUnavailable:
                if not allow_random_weights:
                    raise
        if self.random_weights:  # seeded He init, as torchvision's VGG: features keep a sane scale
            generator = torch.Generator().manual_seed(seed)
            for conv in (m for m in self.vgg if isinstance(m, nn.Conv2d)):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                nn.init.zeros_(conv.bias)
        self.vgg.requires_grad_(False)  # a fixed feature extractor (convs and ReLUs only)
        imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # in [0, 1]
        for name, values in imagenet.items():
            self.register_buffer(name, torch.tensor(values).view(1, 3, 1, 1), persistent=False)

    def features(self, images: Tensor) -> Tensor:
        """Rescaled VGG features (N, C, H', W') of images (N, 3, H, W) in [0, 1]."""
        return self.vgg((images - self.mean) / self.std) * self.rescale

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():  # the target needs no graph
            target = self.features(hr)
        return _CRITERIA[self.criterion](self.features(sr), target)


def _bce(logits: Tensor, target: float) -> Tensor:
    """BCE on logits: finite for saturated logits (+-100), where log(sigmoid) gives inf."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _relativistic(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """RaGAN: each side is judged relative to the average of the other side."""
    return real - fake.mean(), fake - real.mean()


class AdversarialLoss(nn.Module):
    """GAN losses on D's logits (N, 1): vanilla (SRGAN) or relativistic average (ESRGAN). D losses
    average real and fake (half the paper's sum: Adam cannot tell); callers detach SR, freeze D."""

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        check_choice(kind, ("vanilla", "relativistic"), "kind")
        self.kind = kind

    @property
    def needs_real_logits(self) -> bool:
        """Whether ``generator_loss`` uses D(hr); when not, the G step can skip that forward."""
        return self.kind == "relativistic"

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Trains D to tell HR (real, label 1) from SR (fake, label 0)."""
        if self.kind == "relativistic":
            real_logits, fake_logits = _relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))

    def generator_loss(self, real_logits: Tensor | None, fake_logits: Tensor) -> Tensor:
        """Trains G to fool D. Vanilla: the non-saturating -log D(G(z)), strong while D still
        wins; ignores ``real_logits``. Relativistic mirrors the D loss, so G learns from both."""
        if not self.needs_real_logits:
            return _bce(fake_logits, 1.0)
        if real_logits is None:
            raise ValueError("relativistic generator loss needs real_logits (D applied to HR)")
        real_rel, fake_rel = _relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_rel, 0.0) + _bce(fake_rel, 1.0))


class CombinedLoss(nn.Module):
    """``total = sum(weight * term(sr, hr))`` and ``{name: unweighted value}`` as detached 0-dim
    tensors on the device, so a GPU step never waits for the host; repeated names get _2, _3."""

    def __init__(self, terms: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedLoss needs at least one (name, weight, module) term")
        self.weights, self.terms = {}, nn.ModuleDict()
        for name, weight, module in terms:
            unique, n = name, 1
            while unique in self.weights:
                n += 1
                unique = f"{name}_{n}"
            self.weights[unique] = float(weight)
            self.terms[unique] = module

    def forward(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total, values = sr.new_zeros(()), {}
        for name, module in self.terms.items():
            value = module(sr, hr)
            total = total + self.weights[name] * value
            values[name] = value.detach()
        return total, values

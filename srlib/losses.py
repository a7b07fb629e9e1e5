"""Training losses: pixel (L1/MSE), VGG19 perceptual, adversarial, and their weighted sum.
``CombinedLoss`` sums the content losses (SR against HR); the adversarial loss needs the
discriminator and its own optimiser step, so the GAN solver calls it directly."""
import hashlib
import os
import threading
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from srlib.data.io import atomic_path

VGG19_URL = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
VGG19_FILE = Path(urlparse(VGG19_URL).path).name  # vgg19-dcbb9e9d.pth; dcbb9e9d: SHA-256 prefix
_CRITERIA = {"l1": F.l1_loss, "mse": F.mse_loss}


def _check_option(option: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {option} {value!r}; valid values: {list(valid)}")


class PixelLoss(nn.Module):
    """Mean L1 or MSE over all pixels: MSE is what SRResNet optimises (and PSNR measures);
    L1, the usual choice for MSRResNet, gives sharper edges and trains more stably."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        _check_option("PixelLoss kind", kind, _CRITERIA)
        self.kind = kind

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return _CRITERIA[self.kind](sr, hr)


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet VGG19 weights are neither cached nor downloadable."""


def _layer_end(features: nn.Sequential, layer: str, before_activation: bool) -> int:
    """Exclusive end index into ``vgg19().features`` for "vggIJ", the J-th conv of block I:
    just after the conv or after its ReLU (vgg22 -> 8 or 9, vgg54 -> 35 or 36)."""
    names, block, conv = [], 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
            names.append(f"vgg{block}{conv}")
            if names[-1] == layer:
                return index + 1 if before_activation else index + 2
    raise ValueError(f"unknown PerceptualLoss layer {layer!r}; valid values: {names}")


def _load_vgg19(net: nn.Sequential, weights_dir, timeout: float, allow_random: bool) -> bool:
    """Load the ImageNet VGG19 weights into ``net`` from the cache, else download them (hash
    checked, written atomically); False if unavailable and ``allow_random``. ``urlopen`` runs in
    a daemon thread we wait ``timeout`` for: the socket timeout does not bound DNS look-ups."""
    path = Path(weights_dir or Path(torch.hub.get_dir(), "checkpoints")).expanduser() / VGG19_FILE
    answer: list = [TimeoutError(f"no answer from {urlparse(VGG19_URL).hostname} in {timeout:g} s")]

    def fetch() -> None:
        try:
            answer[0] = urlopen(VGG19_URL, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            answer[0] = exc

    try:
        if not path.is_file():
            thread = threading.Thread(target=fetch, daemon=True)
            thread.start()
            thread.join(timeout)
            if isinstance(answer[0], Exception):
                raise answer[0]
            prefix, digest = Path(VGG19_FILE).stem.split("-")[-1], hashlib.sha256()
            with answer[0] as response, atomic_path(path) as tmp, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                if not digest.hexdigest().startswith(prefix):
                    raise ValueError(f"SHA-256 {digest.hexdigest()} does not start with {prefix}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict({key: state[f"features.{key}"] for key in net.state_dict()})
        return True
    except Exception as exc:  # network, disk, unpickling, missing keys: "no weights"
        if allow_random:
            return False
        raise PretrainedWeightsUnavailable(
            "PerceptualLoss needs the ImageNet VGG19 weights (torchvision VGG19_Weights."
            f"IMAGENET1K_V1) but could not load them: {type(exc).__name__}: {exc}\nDownload "
            f"{VGG19_URL} where there is internet access and put it at\n    {path}\n(the file "
            f"{VGG19_FILE} in torch.hub.get_dir()/checkpoints/, i.e. $TORCH_HOME/hub/checkpoints/,"
            " or in the weights_dir option).\nFor tests or offline demos only, `allow_random_vgg:"
            " true` in a config runs with random VGG19 weights; perceptual loss values are then "
            "meaningless.") from exc


class PerceptualLoss(nn.Module):
    """Distance between frozen VGG19 features of SR and HR (SRGAN, Ledig et al. 2017).
    ``layer`` "vggIJ" is the J-th conv of block I; ``before_activation`` takes the conv output,
    not its ReLU (ESRGAN: denser features). ``rescale`` multiplies the features (1/12.75 brings
    VGG54 MSE to the scale of pixel MSE); ``input_range`` is folded into the ImageNet mean/std.
    VGG is not a registered submodule, so its ~20M frozen weights stay out of a generator's
    ``parameters()`` (optimiser) and ``state_dict()`` (checkpoints); ``_apply`` moves it."""

    def __init__(self, layer: str = "vgg54", before_activation: bool = True,
                 rescale: float = 1 / 12.75, criterion: str = "mse", pretrained: bool = True,
                 allow_random_weights: bool = False, input_range: tuple[float, float] = (0.0, 1.0),
                 weights_dir: str | os.PathLike | None = None, download_timeout: float = 5.0,
                 seed: int = 0) -> None:
        super().__init__()
        _check_option("PerceptualLoss criterion", criterion, _CRITERIA)
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"PerceptualLoss input_range must be (low, high), low < high, "
                             f"got {input_range!r}")
        with torch.device("meta"):  # the layout only: the 120M-parameter classifier costs nothing
            features = torchvision.models.vgg19().features
        self.layer_end = _layer_end(features, layer, before_activation)
        self.rescale, self.criterion = float(rescale), criterion
        net = features[: self.layer_end].to_empty(device="cpu")
        self.random_weights = not (pretrained and _load_vgg19(net, weights_dir, download_timeout,
                                                              allow_random_weights))
        if self.random_weights:  # seeded He init, as torchvision's VGG: features keep a sane scale
            generator = torch.Generator().manual_seed(seed)
            for conv in (m for m in net if isinstance(m, nn.Conv2d)):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                nn.init.zeros_(conv.bias)
        object.__setattr__(self, "vgg", net.eval().requires_grad_(False))  # unregistered: see above
        # Mapping [low, high] to [0, 1] and then normalising equals using this mean and std.
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        self.register_buffer("mean", (mean * (high - low) + low).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", (std * (high - low)).view(1, 3, 1, 1), persistent=False)

    def _apply(self, fn, recurse: bool = True):
        if recurse:  # .to(), .cuda(), .half(), ... all end here
            self.vgg._apply(fn)
        return super()._apply(fn, recurse)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Rescaled VGG features of images in ``input_range`` (what the criterion compares)."""
        return self.vgg((images - self.mean) / self.std) * self.rescale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the target needs no graph
            target = self.features(hr)
        return _CRITERIA[self.criterion](self.features(sr), target)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """BCE on logits: finite for saturated logits (+-100), where log(sigmoid) gives inf."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _relativistic(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RaGAN: each side is judged relative to the average of the other side."""
    return real - fake.mean(), fake - real.mean()


class AdversarialLoss(nn.Module):
    """GAN losses on discriminator logits: vanilla (SRGAN) or relativistic average (ESRGAN).
    D losses average the real and fake halves: half the paper's sum, which Adam's update
    ignores. Detaching is the caller's job: D(sr.detach()) in the D step, D frozen in G's."""

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        _check_option("AdversarialLoss kind", kind, ("vanilla", "relativistic"))
        self.kind = kind

    @property
    def needs_real_logits(self) -> bool:
        """Whether ``generator_loss`` uses D(hr); when not, the G step can skip that forward."""
        return self.kind == "relativistic"

    def discriminator_loss(self, real_logits: torch.Tensor,
                           fake_logits: torch.Tensor) -> torch.Tensor:
        """Trains D to tell HR (real) from SR (fake)."""
        if self.kind == "relativistic":
            real_logits, fake_logits = _relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))

    def generator_loss(self, real_logits: torch.Tensor | None,
                       fake_logits: torch.Tensor) -> torch.Tensor:
        """Trains G to fool D. Vanilla: the non-saturating -log D(G(z)), strong while D still
        wins; ignores ``real_logits``. Relativistic mirrors the D loss, so G learns from both."""
        if not self.needs_real_logits:
            return _bce(fake_logits, 1.0)
        if real_logits is None:
            raise ValueError("relativistic generator loss needs real_logits (D applied to HR)")
        real_rel, fake_rel = _relativistic(real_logits, fake_logits)
        return 0.5 * (_bce(real_rel, 0.0) + _bce(fake_rel, 1.0))


class CombinedLoss(nn.Module):
    """``total = sum(weight * term(sr, hr))``, returned with ``{name: unweighted value}``: detached
    0-dim tensors left on the device, so a GPU step never waits for the host (the solver reads
    them once per log window). Repeated names get suffixes (l1, l1_2, ...) to stay distinct."""

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

    def forward(self, sr: torch.Tensor,
                hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, values = sr.new_zeros(()), {}
        for name, module in self.terms.items():
            value = module(sr, hr)
            total = total + self.weights[name] * value
            values[name] = value.detach()
        return total, values

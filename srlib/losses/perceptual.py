"""VGG19 feature-space ("perceptual") content loss, as in SRGAN (Ledig et al., 2017).

Layer names follow the paper: ``vggIJ`` is the J-th convolution of the I-th
block of VGG19 (blocks are separated by max-pooling). ``before_activation``
takes the convolution output instead of its ReLU; ESRGAN showed the
pre-activation features are denser and give better brightness/texture.
Indices below are into ``torchvision.models.vgg19().features``; the network
is cut as ``features[:end]`` (end is exclusive). The table is computed from
the architecture by :func:`vgg_layer_end`; it is written here for reading::

    layer  conv index  end (before ReLU)  end (after ReLU)
    vgg11       0             1                  2
    vgg12       2             3                  4
    vgg21       5             6                  7
    vgg22       7             8                  9
    vgg31      10            11                 12
    vgg32      12            13                 14
    vgg33      14            15                 16
    vgg34      16            17                 18
    vgg41      19            20                 21
    vgg42      21            22                 23
    vgg43      23            24                 25
    vgg44      25            26                 27
    vgg51      28            29                 30
    vgg52      30            31                 32
    vgg53      32            33                 34
    vgg54      34            35                 36

Why VGG is not a submodule: the loss usually lives next to the generator, and a
registered VGG would leak ~20M frozen parameters into ``parameters()`` (and so
into optimizers built from them), into ``state_dict()`` (and so into generator
checkpoints) and into ``model.apply(init_fn)``. It is therefore stored as a
plain attribute, and :meth:`PerceptualLoss._apply` forwards ``.to()``,
``.cuda()``, ``.half()`` etc. to it so it still follows the loss between
devices and dtypes. The normalisation constants are non-persistent buffers for
the same reason: they move with the module but are never saved.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import warnings
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import getproxies

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import VGG19_Weights
from torchvision.models.vgg import cfgs, make_layers

VGG19_URL = VGG19_Weights.IMAGENET1K_V1.url
VGG19_FILE = os.path.basename(urlparse(VGG19_URL).path)  # "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CRITERIA = {"mse": F.mse_loss, "l1": F.l1_loss}
_LAYER_RE = re.compile(r"^vgg(\d)(\d)$")


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet VGG19 weights are neither cached nor downloadable."""


class RandomVGGWeightsWarning(UserWarning):
    """The perceptual loss runs on random VGG19 weights; its values mean nothing."""


def vgg19_features(device: str | torch.device = "cpu") -> nn.Sequential:
    """``vgg19().features`` (same layer indices) with UNINITIALISED weights.

    Skips the 120M-parameter classifier and the default init, which callers
    overwrite anyway (pretrained tensors or :func:`_init_random`).
    """
    with torch.device("meta"):
        net = make_layers(cfgs["E"], batch_norm=False)
    return net if str(device) == "meta" else net.to_empty(device=device)


def vgg_layer_end(layer: str, before_activation: bool = True) -> int:
    """Exclusive end index into ``vgg19().features`` for a paper-style layer name."""
    match = _LAYER_RE.match(layer)
    block = conv = 1
    valid = []
    for index, module in enumerate(vgg19_features("meta")):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 1
        elif isinstance(module, nn.Conv2d):
            valid.append(f"vgg{block}{conv}")
            if match and (int(match.group(1)), int(match.group(2))) == (block, conv):
                # The conv is followed directly by its ReLU.
                return index + 1 if before_activation else index + 2
            conv += 1
    raise ValueError(f"unknown VGG19 layer {layer!r}; valid layers: {valid}")


def _model_dir(weights_dir: str | os.PathLike | None) -> str:
    if weights_dir is not None:
        return os.path.expanduser(os.fspath(weights_dir))
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _check_reachable(url: str, timeout: float) -> None:
    """Fail fast if the download host (or the proxy) does not answer within ``timeout`` s.

    Runs in a daemon thread because a socket timeout does not bound DNS
    look-ups, which can hang for minutes on a machine without network.
    """
    target = urlparse(getproxies().get(urlparse(url).scheme) or url)
    host = target.hostname
    port = target.port or (443 if target.scheme == "https" else 80)
    errors: list[OSError] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise URLError(f"no answer from {host}:{port} within {timeout:g} s")
    if errors:
        raise URLError(errors[0])


def _unavailable_message(path: str, reason: str) -> str:
    return (
        "Pretrained VGG19 weights (torchvision VGG19_Weights.IMAGENET1K_V1, used by PerceptualLoss) "
        f"could not be loaded: {reason}\n"
        "torch looks for them in torch.hub.get_dir()/checkpoints/ (i.e. $TORCH_HOME/hub/checkpoints/, "
        "or the folder given as weights_dir); the exact file it needs is:\n"
        f"    {path}\n"
        f"To place them manually, download {VGG19_URL} on a machine with internet access and copy it "
        f"to that path, keeping the file name {VGG19_FILE}.\n"
        "For tests or offline demos only, set the config key `allow_random_vgg: true` "
        "(PerceptualLoss(allow_random_weights=True)) to run with random VGG19 weights; "
        "perceptual loss values are then meaningless."
    )


def load_vgg19_state_dict(weights_dir: str | os.PathLike | None = None, timeout: float = 5.0) -> dict:
    """ImageNet VGG19 state dict: from the cache if present, else downloaded there.

    A cached file is loaded without touching the network (torch.hub checks the
    hash only while downloading). The download is guarded by a reachability
    probe and a socket timeout (restored afterwards) so that an offline
    machine gets an error in seconds instead of a hang.
    """
    model_dir = _model_dir(weights_dir)
    path = os.path.join(model_dir, VGG19_FILE)
    try:
        if not os.path.exists(path):
            _check_reachable(VGG19_URL, timeout)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            return torch.hub.load_state_dict_from_url(
                VGG19_URL, model_dir=model_dir, map_location="cpu", check_hash=True, weights_only=True
            )
        finally:
            socket.setdefaulttimeout(previous)
    except Exception as exc:  # network, file system or unpickling: all mean "no weights"
        raise PretrainedWeightsUnavailable(_unavailable_message(path, f"{type(exc).__name__}: {exc}")) from exc


def _load_features(net: nn.Sequential, state: dict, path: str) -> None:
    """Copy the ``features.*`` tensors that the truncated ``net`` needs; ignore the rest."""
    wanted = {f"features.{key}" for key in net.state_dict()}
    sub = {key[len("features."):]: value for key, value in state.items() if key in wanted}
    missing = sorted(wanted - set(state))
    if missing:
        raise PretrainedWeightsUnavailable(_unavailable_message(path, f"file lacks tensors {missing[:4]}"))
    try:
        net.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsUnavailable(_unavailable_message(path, f"wrong tensor shapes: {exc}")) from exc


def _init_random(net: nn.Sequential, seed: int) -> None:
    """Deterministic He init (as torchvision's VGG) so random features keep a sane scale."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            nn.init.zeros_(module.bias)


class PerceptualLoss(nn.Module):
    """Distance between frozen VGG19 features of SR and HR images.

    ``rescale`` multiplies the features before the criterion; the paper's
    1/12.75 brings VGG54 MSE to the scale of pixel MSE. ``input_range`` is
    the range images arrive in; it is folded into the ImageNet mean/std so
    VGG always sees correctly normalised input. Gradients reach the SR image
    but never the VGG weights. See the module docstring for the layer table
    and for why VGG stays out of ``parameters()`` and ``state_dict()``.
    """

    def __init__(
        self,
        layer: str = "vgg54",
        before_activation: bool = True,
        rescale: float = 1 / 12.75,
        criterion: str = "mse",
        pretrained: bool = True,
        allow_random_weights: bool = False,
        input_range: tuple[float, float] = (0.0, 1.0),
        weights_dir: str | os.PathLike | None = None,
        download_timeout: float = 5.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if criterion not in _CRITERIA:
            raise ValueError(f"unknown perceptual criterion {criterion!r}; valid criteria: {sorted(_CRITERIA)}")
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range!r}")
        self.layer, self.before_activation = layer, before_activation
        self.layer_end = vgg_layer_end(layer, before_activation)
        self.rescale, self.criterion, self.input_range = float(rescale), criterion, (low, high)

        net = vgg19_features()[: self.layer_end]
        self.random_weights = not pretrained
        reason = "pretrained=False"
        if pretrained:
            path = os.path.join(_model_dir(weights_dir), VGG19_FILE)
            try:
                _load_features(net, load_vgg19_state_dict(weights_dir, download_timeout), path)
            except PretrainedWeightsUnavailable as exc:
                if not allow_random_weights:
                    raise
                self.random_weights, reason = True, str(exc).splitlines()[0]
        if self.random_weights:
            _init_random(net, seed)
            warnings.warn(
                f"PerceptualLoss uses RANDOM VGG19 weights ({reason}): features are random and "
                "perceptual loss numbers are meaningless; use this only for tests and offline demos.",
                RandomVGGWeightsWarning,
                stacklevel=2,
            )
        net.eval().requires_grad_(False)
        object.__setattr__(self, "_vgg", net)  # deliberately not registered: see module docstring

        # Mapping [low, high] -> [0, 1] then ImageNet-normalising equals using
        # mean' = low + m * (high - low) and std' = s * (high - low).
        span = high - low
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * span + low
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * span
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def vgg(self) -> nn.Sequential:
        """The truncated, frozen VGG19 (read-only view for inspection)."""
        return self._vgg

    def _apply(self, fn, recurse: bool = True):
        # .to()/.cuda()/.half()/.float() all funnel through _apply; carry VGG along.
        if recurse:
            self._vgg._apply(fn)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self._vgg.eval()  # VGG is a fixed feature extractor in every mode
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Rescaled VGG features of images given in ``input_range`` (what the criterion compares)."""
        return self._vgg((images - self.mean) / self.std) * self.rescale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the target needs no graph: saves memory
            target = self.features(hr)
        return _CRITERIA[self.criterion](self.features(sr), target)

    def extra_repr(self) -> str:
        return (
            f"layer={self.layer!r}, before_activation={self.before_activation}, end={self.layer_end}, "
            f"rescale={self.rescale:.6g}, criterion={self.criterion!r}, input_range={self.input_range}, "
            f"random_weights={self.random_weights}"
        )

"""Weights from elsewhere: torchvision's ImageNet VGG19 for the perceptual loss (fetched once into
torch's hub cache, hash-checked, atomically) and BasicSR's MSRResNet files (keys renamed)."""
import hashlib
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import torch

from srlib.data.io import atomic_path
from srlib.models.msrresnet import MSRResNet

# torchvision's VGG19_Weights.IMAGENET1K_V1 (a test checks), copied here: importing it takes 3 s
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = Path(urlparse(VGG19_URL).path).name  # vgg19-dcbb9e9d.pth; dcbb9e9d: SHA-256 prefix


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet VGG19 weights are neither cached nor downloadable."""


def load_vgg19(features: torch.nn.Module, weights_dir=None, timeout: float = 5.0) -> None:
    """Load the ImageNet VGG19 weights into ``features`` (a prefix of ``vgg19().features``), first
    downloading them to ``weights_dir`` (hub cache) in a thread, as socket timeouts miss DNS."""
    path = Path(weights_dir or Path(torch.hub.get_dir(), "checkpoints")).expanduser() / VGG19_FILE
    answer: list = [TimeoutError(f"no answer from {urlparse(VGG19_URL).hostname} in {timeout:g} s")]

    def fetch() -> None:
        try:
            answer[0] = urlopen(VGG19_URL, timeout=timeout)
        except Exception as exc:  # re-raised in the caller's thread
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
        features.load_state_dict({key: state[f"features.{key}"] for key in features.state_dict()})
    except Exception as exc:  # network, disk, unpickling, keys: "no weights", and what to do
        raise PretrainedWeightsUnavailable(
            "PerceptualLoss needs the ImageNet VGG19 weights (torchvision VGG19_Weights."
            f"IMAGENET1K_V1) but could not load them: {type(exc).__name__}: {exc}\nDownload "
            f"{VGG19_URL} where there is internet access and put it at\n    {path}\n(the file "
            f"{VGG19_FILE} in torch.hub.get_dir()/checkpoints/, i.e. $TORCH_HOME/hub/checkpoints/,"
            " or in the weights_dir option).\nFor tests or offline demos only, `allow_random_vgg:"
            " true` in a config runs with random VGG19 weights; perceptual loss values are then "
            "meaningless.") from exc


# srlib's MSRResNet keeps BasicSR's module names: only older (mmsr / ESRGAN-repo) files need
# renaming (`recon_trunk`, `HRconv`), and DDP's `module.` prefix goes.
_RENAMES = {"module.": "", "recon_trunk.": "body.", "HRconv.": "conv_hr."}
_KNOWN_KEY = re.compile(r"(conv_(first|hr|last)|body\.\d+\.conv[12]|upconv[12])\.(weight|bias)")


def _rename(key: str) -> str:
    for old, new in _RENAMES.items():
        key = new + key[len(old):] if key.startswith(old) else key
    return key


def infer_msrresnet_config(sd: dict) -> dict:
    """Read MSRResNet's constructor arguments off the tensor shapes of a mapped state dict."""
    num_feat, in_channels = sd["conv_first.weight"].shape[:2]
    ratio = sd["upconv1.weight"].shape[0] // num_feat  # r^2 channels per output feature
    scale = 4 if "upconv2.weight" in sd else {4: 2, 9: 3}.get(ratio)
    if scale is None:
        raise ValueError(f"upconv1 has {ratio}x num_feat outputs; expected 4 (x2) or 9 (x3)")
    return {"in_channels": int(in_channels), "out_channels": int(sd["conv_last.weight"].shape[0]),
            "num_feat": int(num_feat), "scale": scale,
            "num_block": len({k.split(".")[1] for k in sd if k.startswith("body.")})}


def load_basicsr_msrresnet(state_dict_or_path, param_key: str | None = None) -> dict:
    """srlib's MSRResNet state dict from a BasicSR state dict, checkpoint or file ('params_ema',
    BasicSR's advice, beats 'params' unless ``param_key``); bad keys or shapes raise ValueError."""
    obj = state_dict_or_path
    if isinstance(obj, (str, os.PathLike)):  # weights_only: a checkpoint must not run code
        obj = torch.load(obj, map_location="cpu", weights_only=True)
    if param_key is not None and param_key not in obj:
        raise ValueError(f"checkpoint has no {param_key!r} entry; keys: {sorted(obj)}")
    key = param_key or next((k for k in ("params_ema", "params") if k in obj), None)
    sd = {_rename(k): v for k, v in (obj[key] if key else obj).items()}
    if unknown := sorted(k for k in sd if not _KNOWN_KEY.fullmatch(k)):
        raise ValueError(f"unknown keys in BasicSR MSRResNet state dict: {unknown}")
    missing = [k for k in ("conv_first.weight", "upconv1.weight", "conv_last.weight")
               if k not in sd]
    if not missing:
        cfg = infer_msrresnet_config(sd)
        with torch.device("meta"):  # shapes only, no memory or init cost
            expected = MSRResNet(**cfg).state_dict()
        missing = sorted(set(expected) - set(sd))
    if missing:
        raise ValueError(f"missing keys in BasicSR MSRResNet state dict: {missing}")
    if bad := [f"{k}: {tuple(sd[k].shape)} != {tuple(v.shape)}"
               for k, v in expected.items() if sd[k].shape != v.shape]:
        raise ValueError(f"shape mismatches for MSRResNet({cfg}): {bad}")
    return sd

"""Load BasicSR `MSRResNet` checkpoints into srlib's MSRResNet.

srlib keeps BasicSR's module names, so the map is the identity for current BasicSR
files; older (mmsr / ESRGAN-repo) files named the body `recon_trunk` and conv_hr
`HRconv`, which are renamed here.
"""

import os
import re

import torch

from .msrresnet import MSRResNet

_LEGACY_PREFIXES = {"recon_trunk.": "body.", "HRconv.": "conv_hr."}
_KNOWN_KEY = re.compile(
    r"(conv_first|body\.\d+\.conv[12]|upconv[12]|conv_hr|conv_last)\.(weight|bias)"
)


def _raw_state_dict(obj, param_key):
    if isinstance(obj, (str, os.PathLike)):
        # weights_only: a checkpoint is data; never let it run code on load
        obj = torch.load(obj, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state dict or checkpoint dict, got {type(obj).__name__}")
    if param_key is not None:
        if param_key not in obj:
            raise ValueError(f"checkpoint has no {param_key!r} entry; keys: {sorted(obj)}")
        return obj[param_key]
    # BasicSR saves {'params': ...} and, when training with EMA, also 'params_ema'
    # (the smoothed weights its releases recommend)
    for key in ("params_ema", "params"):
        if key in obj:
            return obj[key]
    return obj


def _rename(key: str) -> str:
    if key.startswith("module."):  # saved from DataParallel / DDP
        key = key[len("module."):]
    for old, new in _LEGACY_PREFIXES.items():
        if key.startswith(old):
            key = new + key[len(old):]
    return key


def infer_msrresnet_config(sd: dict) -> dict:
    """Read MSRResNet's constructor arguments off the tensor shapes of a mapped state dict."""
    num_feat, in_channels = sd["conv_first.weight"].shape[:2]
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("body.")}
    if "upconv2.weight" in sd:
        scale = 4
    else:
        ratio = sd["upconv1.weight"].shape[0] // num_feat  # r^2 channels per output feature
        scale = {4: 2, 9: 3}.get(ratio)
        if scale is None:
            raise ValueError(f"upconv1 has {ratio}x num_feat outputs; expected 4 (x2) or 9 (x3)")
    return dict(in_channels=int(in_channels), out_channels=int(sd["conv_last.weight"].shape[0]),
                num_feat=int(num_feat), num_block=len(blocks), scale=scale)


def load_basicsr_msrresnet(state_dict_or_path, param_key: str | None = None) -> dict:
    """Return a state dict for srlib's MSRResNet from a BasicSR state dict, checkpoint or file.

    Raises ValueError listing unknown keys, missing keys or shape mismatches, so a wrong
    file fails loudly instead of loading half a model.
    """
    raw = _raw_state_dict(state_dict_or_path, param_key)
    sd = {_rename(k): v for k, v in raw.items()}
    unknown = sorted(k for k in sd if not _KNOWN_KEY.fullmatch(k))
    if unknown:
        raise ValueError(f"unknown keys in BasicSR MSRResNet state dict: {unknown}")
    for key in ("conv_first.weight", "upconv1.weight", "conv_last.weight"):
        if key not in sd:
            raise ValueError(f"missing keys in BasicSR MSRResNet state dict: ['{key}']")
    cfg = infer_msrresnet_config(sd)
    with torch.device("meta"):  # shapes only, no memory or init cost
        expected = MSRResNet(**cfg).state_dict()
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ValueError(f"missing keys in BasicSR MSRResNet state dict ({cfg}): {missing}")
    bad = [f"{k}: {tuple(sd[k].shape)} != {tuple(v.shape)}"
           for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise ValueError(f"shape mismatches for MSRResNet({cfg}): {bad}")
    return sd


def msrresnet_from_basicsr(state_dict_or_path, param_key: str | None = None) -> MSRResNet:
    """Build a right-sized MSRResNet and load BasicSR weights into it strictly."""
    sd = load_basicsr_msrresnet(state_dict_or_path, param_key)
    model = MSRResNet(**infer_msrresnet_config(sd))
    model.load_state_dict(sd, strict=True)
    return model

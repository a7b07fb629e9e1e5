"""Load BasicSR `MSRResNet` checkpoints into srlib's MSRResNet, which keeps BasicSR's module
names: only older (mmsr / ESRGAN-repo) files need renaming (`recon_trunk`, `HRconv`)."""
import os
import re

import torch

from .msrresnet import MSRResNet

_RENAMES = {"module.": "", "recon_trunk.": "body.", "HRconv.": "conv_hr."}  # module.: DDP
_KNOWN_KEY = re.compile(r"(conv_first|body\.\d+\.conv[12]|upconv[12]|conv_hr|conv_last)\."
                        r"(weight|bias)")


def _rename(key: str) -> str:
    for old, new in _RENAMES.items():
        if key.startswith(old):
            key = new + key[len(old):]
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
    """Return a state dict for srlib's MSRResNet from a BasicSR state dict, checkpoint or file.
    Without `param_key`, 'params_ema' (the EMA weights BasicSR recommends) beats 'params'.
    Unknown or missing keys and shape mismatches raise ValueError: no half-loaded model."""
    obj = state_dict_or_path
    if isinstance(obj, (str, os.PathLike)):  # weights_only: a checkpoint must not run code
        obj = torch.load(obj, map_location="cpu", weights_only=True)
    if param_key is not None and param_key not in obj:
        raise ValueError(f"checkpoint has no {param_key!r} entry; keys: {sorted(obj)}")
    key = param_key or next((k for k in ("params_ema", "params") if k in obj), None)
    sd = {_rename(k): v for k, v in (obj[key] if key else obj).items()}
    unknown = sorted(k for k in sd if not _KNOWN_KEY.fullmatch(k))
    if unknown:
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
    bad = [f"{k}: {tuple(sd[k].shape)} != {tuple(v.shape)}"
           for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise ValueError(f"shape mismatches for MSRResNet({cfg}): {bad}")
    return sd

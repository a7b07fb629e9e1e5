"""Crash-safe checkpoints: plain tensors and dicts only, written atomically.

A checkpoint holds state dicts (never pickled objects), so it loads with
``torch.load(weights_only=True)``: safe to open from strangers, and independent of class
names that may change. The file appears under its final name only once it is complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import torch

FORMAT = "srlib-checkpoint-v1"


def save_atomic(state: dict, path: Union[str, Path]) -> Path:
    """Write ``state`` to a temporary file beside ``path``, flush it to disk, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load(path: Union[str, Path], map_location: Any = "cpu") -> dict:
    """Load a checkpoint safely; a clear error names a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, or a pickle of whole objects
        raise ValueError(f"cannot load checkpoint {path}: {err}") from None


def generator_state(source: Union[str, Path, dict], prefer_ema: bool = True) -> dict:
    """The generator weights from an srlib checkpoint (EMA ones when present) or a raw state dict."""
    state = load(source) if not isinstance(source, dict) else source
    if state.get("format") == FORMAT:
        if prefer_ema and state.get("ema") is not None:
            return state["ema"]
        return state["model"]
    if all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise ValueError(f"{source}: neither an srlib checkpoint nor a state dict of tensors")

"""What a run leaves in its logdir, written so that a crash loses nothing.

``last.pt`` / ``best.pt`` hold state dicts only (never pickled objects), so they load with
``torch.load(weights_only=True)``: safe to open from strangers, and independent of class names
that may change. A file appears under its final name only once it is complete. The functions
taking ``run`` read and write the fields of ``srlib.build.Run``; only rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from srlib.data.io import atomic_path, write_text_atomic

FORMAT = "srlib-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or weights that do not fit the model."""


def save(state: dict, path: str | Path) -> Path:
    """Write ``state`` beside ``path``, flush it to disk, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def load(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint safely; a clear error names a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, or a pickle of whole objects
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None


def generator_state(source: str | Path | dict, prefer_ema: bool = True) -> dict:
    """Generator weights from an srlib checkpoint (the EMA copy when there is one) or a raw
    state dict of tensors."""
    state = source if isinstance(source, dict) else load(source)
    if state.get("format") == FORMAT:
        return state["ema"] if prefer_ema and state.get("ema") is not None else state["model"]
    if all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise CheckpointError(f"{source}: neither an srlib checkpoint nor a state dict of tensors")


def load_weights(model, state_dict: dict, source) -> None:
    """``model.load_state_dict`` with a mismatch said in one line naming ``source``."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # missing or unexpected keys, or other shapes
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{source}: its weights do not fit {type(model).__name__} "
                              f"({detail})") from None


def _state(run) -> dict:
    d = run.d
    return {
        "format": FORMAT, "iteration": run.iteration, "best_psnr": run.best_psnr,
        "config": dataclasses.asdict(run.cfg), "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "ema_state": {"updates": run.ema.updates} if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "scaler": run.scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "extra": {} if d is None else {
            "discriminator": d.state_dict(), "d_optimizer": run.d_optimizer.state_dict(),
            "d_scheduler": run.d_scheduler.state_dict() if run.d_scheduler else None,
            "d_scaler": run.d_scaler.state_dict()},
    }


def save_run(run, name: str) -> None:
    """``logdir/<name>.pt`` (and, for a GAN's ``last``, D alone in discriminator.pt)."""
    if not run.dist.is_main:
        return
    logdir = Path(run.cfg.logdir)
    save(_state(run), logdir / f"{name}.pt")
    if run.d is not None and name == "last":
        save({"discriminator": run.d.state_dict(), "iteration": run.iteration},
             logdir / "discriminator.pt")


def restore(run, path) -> None:
    """Continue exactly where ``path`` stopped: weights, optimiser, schedule, RNG, EMA, D."""
    state = load(path, map_location=run.device)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib training checkpoint (use "
                              "generator_path to start from bare generator weights)")
    load_weights(run.model, state["model"], path)
    if run.ema is not None and state.get("ema") is not None:
        run.ema.module.load_state_dict(state["ema"])
        run.ema.updates = int((state.get("ema_state") or {}).get("updates", 0))
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state.get("scheduler") is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    run.iteration, run.best_psnr = int(state["iteration"]), float(state["best_psnr"])
    extra = state.get("extra") or {}
    if run.d is not None:
        load_weights(run.d, extra["discriminator"], path)
        run.d_optimizer.load_state_dict(extra["d_optimizer"])
        if run.d_scheduler is not None and extra.get("d_scheduler") is not None:
            run.d_scheduler.load_state_dict(extra["d_scheduler"])
        run.d_scaler.load_state_dict(extra["d_scaler"])
    _truncate_log(run)


def append_log(run, record: dict) -> None:
    """One JSON line in ``metrics.jsonl`` per log window, validation or note."""
    if run.dist.is_main:
        Path(run.cfg.logdir).mkdir(parents=True, exist_ok=True)
        with open(Path(run.cfg.logdir) / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _truncate_log(run) -> None:
    """Drop log lines written after the checkpoint we resume from (a crash leaves them)."""
    path = Path(run.cfg.logdir) / "metrics.jsonl"
    if run.dist.is_main and path.exists():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["iteration"] <= run.iteration]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

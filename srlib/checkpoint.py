"""What a run leaves in its logdir, written so that a crash loses nothing, and generator files.
Checkpoints hold state dicts only, so they load with ``torch.load(weights_only=True)``: safe
to open from strangers. A file appears under its final name only once it is complete. The
functions taking ``run`` use the fields of ``srlib.build.Run``; only rank 0 writes."""
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from srlib.config import Config, ConfigError
from srlib.data.io import atomic_path, write_text_atomic
from srlib.models.basicsr import infer_msrresnet_config, load_basicsr_msrresnet

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


def read_generator(source: str | Path | dict, prefer_ema: bool = True) -> tuple[dict | None, dict]:
    """(model, weights) of a generator file: an srlib checkpoint (its EMA copy when there is
    one), a ``.safetensors`` file from ``srlib export``, or BasicSR MSRResNet weights. ``model``
    is ``{"model", "scale", "model_params"}``, or None for a bare state dict of tensors."""
    if not isinstance(source, dict) and Path(source).suffix == ".safetensors":
        try:
            with safe_open(str(source), "pt") as handle:
                model = json.loads((handle.metadata() or {})["srlib_model"])
                return model, {k: handle.get_tensor(k) for k in handle.keys()}
        except (OSError, KeyError, ValueError, SafetensorError) as err:
            raise CheckpointError(f"{source}: not a generator exported by srlib ({err})") from None
    state = source if isinstance(source, dict) else load(source)
    if state.get("format") == FORMAT:
        weights = state["ema"] if prefer_ema and state.get("ema") is not None else state["model"]
        return {k: state["config"][k] for k in ("model", "scale", "model_params")}, weights
    try:  # BasicSR's files: {"params": ..., "params_ema": ...}, module names as srlib's
        weights = load_basicsr_msrresnet(state, None if prefer_ema else "params")
    except (ValueError, KeyError, AttributeError):
        if all(isinstance(v, torch.Tensor) for v in state.values()):
            return None, state
        raise CheckpointError(f"{source}: neither an srlib checkpoint nor MSRResNet weights "
                              "nor a state dict of tensors") from None
    params = infer_msrresnet_config(weights)
    return {"model": "msrresnet", "scale": params.pop("scale"), "model_params": params}, weights


def export(source: str | Path, out: str | Path) -> Path:
    """The generator of ``source`` (EMA weights when there are any) as safetensors, with what
    rebuilds it (model name, scale, parameters) in the file's metadata."""
    model, weights = read_generator(source)
    if model is None:
        raise CheckpointError(f"{source}: a bare state dict says nothing of its model")
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp),
                  metadata={"srlib_model": json.dumps(model)})
    return Path(out)


def load_weights(model, state_dict: dict, source) -> None:
    """``model.load_state_dict`` with a mismatch said in one line naming ``source``."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # missing or unexpected keys, or other shapes
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{source}: its weights do not fit {type(model).__name__} "
                              f"({detail})") from None


def _state(run, finished: bool) -> dict:
    return {
        "format": FORMAT, "iteration": run.iteration, "best_psnr": run.best_psnr,
        "finished": finished, "config": asdict(run.cfg), "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "ema_state": {"updates": run.ema.updates} if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "extra": {} if run.d is None else {
            "discriminator": run.d.state_dict(), "d_optimizer": run.d_optimizer.state_dict(),
            "d_scheduler": run.d_scheduler.state_dict() if run.d_scheduler else None,
            "d_scaler": run.d_scaler.state_dict()},
    }


def save_run(run, name: str, finished: bool = False) -> None:
    """``logdir/<name>.pt`` (and, for a GAN's ``last``, D alone in discriminator.pt);
    ``finished`` marks the end of the run, which a new run may not resume or replace."""
    if not run.dist.is_main:
        return
    logdir = Path(run.cfg.logdir)
    save(_state(run, finished), logdir / f"{name}.pt")
    if run.d is not None and name == "last":
        save({"discriminator": run.d.state_dict(), "iteration": run.iteration},
             logdir / "discriminator.pt")


def claim_logdir(cfg: Config, overwrite: bool = False, is_main: bool = True) -> Config:
    """A run never destroys another: an unfinished run in ``cfg.logdir`` is resumed (the
    returned config names its ``last.pt``), a finished one is refused unless ``overwrite``."""
    logdir, last = Path(cfg.logdir), Path(cfg.logdir) / "last.pt"
    if cfg.checkpoint is None and last.exists() and not overwrite:
        state = load(last)
        if state.get("finished", True):
            raise ConfigError(f'key "logdir": {logdir} holds a finished run ({state["iteration"]} '
                              "iterations); set another logdir to keep it, or pass --overwrite "
                              "(train(..., overwrite=True)) to replace it")
        print(f"resuming the unfinished run in {os.path.relpath(logdir)} from iteration "
              f"{state['iteration']}", flush=True)
        return replace(cfg, checkpoint=str(last))
    if cfg.checkpoint is None and is_main:  # a fresh start: nothing of an earlier run stays
        for name in ("last.pt", "best.pt", "discriminator.pt", "metrics.jsonl", "config.json"):
            (logdir / name).unlink(missing_ok=True)
    return cfg


def restore(run, path) -> None:
    """Continue exactly where ``path`` stopped: weights, optimiser, schedule, RNG, EMA, D."""
    state = load(path, map_location=run.device)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib training checkpoint (use "
                              "generator_path to start from bare generator weights)")
    _same_schedule(state["config"], asdict(run.cfg))
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


def _same_schedule(saved: dict, now: dict) -> None:
    """Refuse to resume with another optimiser or schedule: the restored optimiser and
    scheduler states would follow the old one (a cosine would climb back up)."""
    keys = ["optimizer", "scheduler", "discriminator"]
    schedules = (now["scheduler"], (now["discriminator"] or {}).get("scheduler"))
    if any(s and s["name"] != "reduce" for s in schedules):  # their length is the run's
        keys += ["iterations", "epochs"]
    for key in keys:
        if saved.get(key) != now[key]:
            raise ConfigError(f'key "{key}": {json.dumps(now[key])} differs from the run being '
                              f"resumed ({json.dumps(saved.get(key))}); a resumed run keeps its "
                              "schedule: undo the change, or start a new run in another logdir")


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

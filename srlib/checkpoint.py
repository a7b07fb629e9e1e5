"""Checkpoints: what a run saves and restores (only rank 0 writes), and generator files from
anywhere. Plain values and state dicts only, so ``torch.load(weights_only=True)`` opens them
safely, from anyone; a file gets its name once complete. Format v2 keeps each network (G; D in a
GAN) as ``networks[name]`` = ``{"weights", "optimizer", "scheduler", "scaler"}``; v1 is upgraded."""
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from srlib.config import ConfigError
from srlib.data.io import atomic_path
from srlib.pretrained import infer_msrresnet_config, load_basicsr_msrresnet

FORMAT = "srlib-checkpoint-v2"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or weights that do not fit the model."""


def save(state: dict, path: str | Path) -> Path:
    """Atomic and fsync'd; serialised first, as torch.save hides a full disk ("unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def _upgrade(state: dict) -> dict:
    """A v1 checkpoint in the v2 layout (the values are the same tensors)."""
    if state.get("format") != "srlib-checkpoint-v1":
        return state
    nets = {"g": {"weights": state["model"], "optimizer": state["optimizer"],
                  "scheduler": state["scheduler"], "scaler": state["scaler"]}}
    if extra := state.get("extra"):
        nets["d"] = {"weights": extra["discriminator"], "optimizer": extra["d_optimizer"],
                     "scheduler": extra.get("d_scheduler"), "scaler": extra["d_scaler"]}
    keep = ("iteration", "best_psnr", "finished", "config", "ema", "rng")
    return {"format": FORMAT, **{k: state[k] for k in keep if k in state}, "networks": nets}


def load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (an srlib one in today's layout), naming a bad or missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, safetensors, or a pickle of whole objects
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if is_safetensors(path):
            reason = "it is a safetensors file (srlib export writes those; use a .safetensors name)"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None
    return _upgrade(state) if isinstance(state, dict) else state


def is_safetensors(path: str | Path) -> bool:
    """By content: 8 bytes of header length, then the JSON header."""
    with open(path, "rb") as handle:
        return handle.read(9)[8:] == b"{"


def training_state_format(path: Path) -> str | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    except Exception:  # not a checkpoint at all
        return None
    return state.get("format") if isinstance(state, dict) else None


def read_generator(source: str | Path | dict, prefer_ema: bool = True) -> tuple[dict | None, dict]:
    """(model, weights) of an srlib checkpoint (EMA if any), an exported ``.safetensors`` or BasicSR
    MSRResNet file; ``model`` is ``{"model", "scale", "model_params"}`` or None (bare weights)."""
    if not isinstance(source, dict) and Path(source).is_file() and is_safetensors(source):
        try:
            with safe_open(str(source), "pt") as handle:
                model = json.loads((handle.metadata() or {})["srlib_model"])
                return model, {k: handle.get_tensor(k) for k in handle.keys()}
        except (OSError, KeyError, ValueError, SafetensorError) as err:
            raise CheckpointError(f"{source}: not a generator exported by srlib ({err})") from None
    state = source if isinstance(source, dict) else load(source)
    if state.get("format") == FORMAT:
        ema = state.get("ema") if prefer_ema else None
        weights = ema if ema is not None else state["networks"]["g"]["weights"]
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


def load_weights(model, state_dict: dict, source) -> None:
    """``model.load_state_dict`` with a mismatch said in one line naming ``source``."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # missing or unexpected keys, or other shapes
        raise CheckpointError(f"{source}: its weights do not fit {type(model).__name__} "
                              f"({' '.join(str(err).split())[:300]})") from None


def save_run(run, name: str, finished: bool = False) -> None:
    """``logdir/<name>.pt``; ``finished`` marks a run's end: no new run resumes or replaces it."""
    if not run.dist.is_main:
        return
    networks = {key: {"weights": net.module.state_dict(), "optimizer": net.optimizer.state_dict(),
                      "scheduler": net.scheduler.state_dict() if net.scheduler else None,
                      "scaler": net.scaler.state_dict()} for key, net in run.networks().items()}
    save({"format": FORMAT, "iteration": run.iteration, "best_psnr": run.best_psnr,
          "finished": finished, "config": asdict(run.cfg), "networks": networks,
          "ema": run.ema.module.state_dict() if run.ema is not None else None,
          "rng": {"torch": torch.get_rng_state(),
                  "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}},
         Path(run.cfg.logdir) / f"{name}.pt")


def restore(run, path) -> None:
    """Continue exactly where ``path`` stopped: networks, optimisers, schedules, EMA, RNG."""
    state = load(path, map_location=run.device)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib training checkpoint (use "
                              "generator_path to start from bare generator weights)")
    _same_schedule(state["config"], asdict(run.cfg))
    for key, net in run.networks().items():
        saved = state["networks"][key]
        load_weights(net.module, saved["weights"], path)
        net.optimizer.load_state_dict(saved["optimizer"])
        if net.scheduler is not None and saved["scheduler"] is not None:
            net.scheduler.load_state_dict(saved["scheduler"])
        net.scaler.load_state_dict(saved["scaler"])
    if run.ema is not None and state.get("ema") is not None:
        run.ema.module.load_state_dict(state["ema"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    run.iteration, run.best_psnr = int(state["iteration"]), float(state["best_psnr"])


def _same_schedule(saved: dict, now: dict) -> None:
    """A resumed run keeps its optimisers and schedules: restored states follow the old ones."""
    keys = ["optimizer", "scheduler", "discriminator"]
    schedules = (now["scheduler"], (now["discriminator"] or {}).get("scheduler"))
    if any(s and s["name"] != "reduce" for s in schedules):  # their length is the run's
        keys += ["iterations", "epochs"]
    for key in keys:
        if saved.get(key) != now[key]:
            raise ConfigError(f'key "{key}": {json.dumps(now[key])} differs from the run being '
                              f"resumed ({json.dumps(saved.get(key))}); a resumed run keeps its "
                              "schedule: undo the change, or start a new run in another logdir")

"""Run one training job from a config (what ``srlib train`` and the notebooks call)."""
from __future__ import annotations

from typing import Optional, Union

from srlib import config as config_mod
from srlib import registry
from srlib.solvers.distributed import DistInfo


def train(config: Union[str, config_mod.Config], overrides: Optional[list[str]] = None,
          progress: bool = True, device: Optional[str] = None) -> dict:
    """Train; returns a summary with the best validation Y-PSNR and the bicubic baseline."""
    cfg = config if isinstance(config, config_mod.Config) else config_mod.load(config, overrides)
    dist = DistInfo.from_environment()
    try:
        solver = registry.build_solver(cfg, device=device, progress=progress, dist=dist)
        summary = solver.solve()
        summary["notes"] = list(solver.notes)
        if cfg.validation is not None and dist.is_main:
            from srlib.evaluate import bicubic_baseline, summarize
            rows = bicubic_baseline(cfg.validation.root, scale=cfg.scale)
            summary["bicubic_psnr_y"] = summarize(rows)["psnr_y"]
            summary["gain_db"] = summary["best_val_psnr_y"] - summary["bicubic_psnr_y"]
        return summary
    finally:
        dist.close()


def describe(summary: dict, val_name: str = "validation") -> str:
    """One paragraph a person reads at the end of a run."""
    lines = [f"trained {summary['iterations']} iterations in {summary['minutes']:.1f} min"
             + (" (stopped by max_minutes)" if summary.get("stopped_by_time") else ""),
             f"best {val_name} Y-PSNR: {summary['best_val_psnr_y']:.2f} dB"]
    if "bicubic_psnr_y" in summary:
        lines.append(f"bicubic {val_name} Y-PSNR: {summary['bicubic_psnr_y']:.2f} dB "
                     f"(gain {summary['gain_db']:+.2f} dB)")
    lines += [f"NOTE: {n}" for n in summary.get("notes", [])]
    lines.append(f"checkpoints and metrics.jsonl in {summary['logdir']}")
    return "\n".join(lines)

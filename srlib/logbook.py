"""What a run reports, and where: ``metrics.jsonl`` in the logdir (one JSON line per log window,
validation or note, with its wall-clock ``time``), TensorBoard events when installed, a progress
bar on a terminal, else status lines (a log file, ``nohup``, a notebook). Only rank 0 writes."""
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from srlib.data.io import write_text_atomic

try:  # optional: pip install -e ".[tensorboard]", then `tensorboard --logdir runs`
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None

METRICS = "metrics.jsonl"


def _records(path: Path) -> tuple[list[dict], list[str]]:
    """(parsed, unparsed) JSON lines of ``path``: a crash or a full disk can tear the last one."""
    good, torn = [], []
    for line in filter(str.strip, path.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(line)
    return good, torn


def read(logdir) -> dict[str, list[dict]]:
    """A run's records by kind: ``{"train", "val", "note"}``; a torn line is left out, warned."""
    path = Path(logdir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS} in {logdir}: has this run been trained?")
    records, torn = _records(path)
    if torn:
        warnings.warn(f"{path}: left out {len(torn)} unreadable line(s) (a torn write)",
                      stacklevel=2)
    out: dict[str, list[dict]] = {"train": [], "val": [], "note": []}
    for record in records:
        out.setdefault(record.get("kind", "note"), []).append(record)
    return out


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


def read_back(window: list[dict], iteration: int, logdir) -> None:
    """A window's logged tensors as floats, in one read-back (a GPU step never waits for the host
    in between); :class:`TrainingDiverged` at the first non-finite one, before anything is saved."""
    slots = [(logs, k) for logs in window for k, v in logs.items() if torch.is_tensor(v)]
    if slots:
        values = torch.stack([logs[k].float().reshape(()) for logs, k in slots]).tolist()
        for (logs, k), value in zip(slots, values):
            logs[k] = value
    for step, logs in enumerate(window, start=iteration - len(window) + 1):
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            last = Path(logdir) / "last.pt"
            kept = (f"the last good checkpoint {last} is intact" if last.exists() else
                    "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"loss became non-finite at iteration {step} ({bad}); training stopped and "
                f"{kept}. Lower the learning rate, or use precision fp32.")


def describe(summary: dict, val_name: str = "validation") -> str:
    lines = [f"trained {summary['iterations']} iterations in {summary['minutes']:.1f} min"
             + (" (stopped by max_minutes)" if summary.get("stopped_by_time") else ""),
             f"best {val_name} Y-PSNR: {summary['best_val_psnr_y']:.2f} dB"]
    if "bicubic_psnr_y" in summary:
        lines.append(f"bicubic {val_name} Y-PSNR: {summary['bicubic_psnr_y']:.2f} dB "
                     f"(gain {summary['gain_db']:+.2f} dB)")
    lines.append(f"checkpoints and metrics.jsonl in {os.path.relpath(summary['logdir'])}")
    return "\n".join(lines)


class Logbook:
    def __init__(self, logdir, total: int, dist, device, progress: bool, notes: list[str]):
        self.path, self.total, self.dist, self.device = Path(logdir) / METRICS, total, dist, device
        self.enabled = enabled = dist.is_main
        self.bar_wanted = progress and enabled and sys.stdout.isatty() and sys.stderr.isatty()
        self.notes = list(notes)  # what a person must know: said and logged when it starts
        self.bar, self.writer, self.last_said = None, None, ""
        if SummaryWriter is None:
            self.notes.append('TensorBoard is not installed, so this run writes no events: '
                              'pip install -e ".[tensorboard]"')

    def start(self, iteration: int, config_text: str, desc: str) -> None:
        """Once the logdir is claimed: write config.json, open the events and bar, say the notes."""
        if not self.enabled:
            return
        write_text_atomic(self.path.parent / "config.json", config_text)
        if iteration and self.path.exists():  # resumed: drop what a crash wrote after the save
            records, torn = _records(self.path)
            if torn:
                self.notes.append(f"{self.path}: dropped {len(torn)} unreadable line(s) left by "
                                  "a torn write")
            kept = [r for r in records if r.get("iteration", 0) <= iteration]
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        if SummaryWriter is not None:
            self.writer = SummaryWriter(str(self.path.parent))
            self.writer.add_text("config", f"```json\n{config_text}\n```", iteration)
        for text in self.notes:
            print(f"NOTE: {text}", flush=True)
            self._append({"kind": "note", "iteration": iteration, "text": text})
        if self.bar_wanted:
            self.bar = tqdm(total=self.total, initial=iteration, unit="it", dynamic_ncols=True,
                            desc=desc)

    def _append(self, record: dict) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        except OSError as err:  # a full disk: name the file (a torn line is read past later)
            raise OSError(err.errno, err.strerror, str(self.path)) from None

    def _say(self, line: str) -> None:
        (self.bar.write if self.bar is not None else print)(line)
        sys.stdout.flush()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def train(self, iteration: int, window: list[dict], seconds: float, lr: float,
              deadline: float, every: int) -> None:
        """A window's means over the whole batch (every rank calls this: each saw its share), and
        some 20 status lines a run without a bar (``deadline``: max_minutes' monotonic end)."""
        means = dict(zip(window[0], self.dist.mean(
            [sum(w[k] for w in window) / len(window) for k in window[0]], self.device)))
        rate = len(window) / max(1e-9, seconds)
        if not self.enabled:
            return
        self._append({"kind": "train", "iteration": iteration, **means, "it_per_s": rate, "lr": lr})
        if self.writer is not None:
            for key, value in {**means, "lr": lr}.items():
                self.writer.add_scalar(f"train/{key}", value, iteration)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
        elif iteration % (max(1, self.total // (20 * every)) * every) == 0 \
                or iteration == self.total:
            eta = min((self.total - iteration) / rate, deadline - time.monotonic())
            self._say(f"iteration {iteration}/{self.total}  loss {means['loss']:.4f}  "
                      f"lr {lr:.2e}  {rate:.1f} it/s  ETA {eta / 60:.1f} min")

    def validation(self, iteration: int, name: str, scores: dict, best: float,
                   images: dict | None = None) -> None:
        if not self.enabled:
            return
        self._append({"kind": "val", "iteration": iteration, **scores})
        if self.writer is not None:
            for key, value in scores.items():
                self.writer.add_scalar(f"val/{key}", value, iteration)
            for label, image in (images or {}).items():
                self.writer.add_image(f"val/{label}", image, iteration,
                                      dataformats="HWC" if image.ndim == 3 else "HW")
        self._say(f"validation at {iteration}: {name} Y-PSNR {scores['psnr_y']:.2f} dB "
                  f"(best {best:.2f})")

    def close(self, last_words: str = "") -> None:
        """End the bar and the events; ``last_words`` are said after the bar is gone."""
        self.last_said = last_words
        for output in (self.bar, self.writer):
            if output is not None:
                output.close()
        self.bar = self.writer = None
        if last_words and self.enabled:
            self._say(last_words)

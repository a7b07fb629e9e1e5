"""What every benchmark script shares: the machine line, the one ``/proc`` reader, the config
the benchmarks train with, and the summary table's row."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing srlib

import torch  # noqa: E402

from srlib import config as config_mod  # noqa: E402

QUICK_CONFIG = ROOT / "configs/quick/msrresnet.json"
FULL_CONFIG = ROOT / "configs/msrresnet_x4.json"
T91 = ROOT / "data/T91"


# --------------------------------------------------------------------------- /proc

def proc_fields(path: str | Path) -> dict[str, int]:
    """The ``Name:  value kB`` lines of a /proc file (status, meminfo, smaps_rollup), in
    bytes; empty when the file cannot be read (not Linux, a process that has ended)."""
    fields = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    return fields


def proc_bytes(field: str, path: str | Path = "/proc/self/status") -> int:
    """One field of :func:`proc_fields` (0 when unknown): VmRSS, VmHWM, MemAvailable..."""
    return proc_fields(path).get(field, 0)


def clear_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- machine

class Machine(NamedTuple):
    cpu: str
    logical_cores: int
    usable_cores: int
    memory_gb: float
    torch: str
    torch_threads: int
    python: str
    platform: str
    gpu: str | None
    load_average_start: tuple | None
    load_average_end: tuple | None = None


def _load() -> tuple | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine() -> Machine:
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count())
    return Machine(cpu=cpu, logical_cores=os.cpu_count() or 1, usable_cores=usable,
                   memory_gb=proc_bytes("MemTotal", "/proc/meminfo") / 2**30,
                   torch=torch.__version__, torch_threads=torch.get_num_threads(),
                   python=platform.python_version(), platform=platform.platform(),
                   gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                   load_average_start=_load())


def finished(m: Machine) -> Machine:
    return m._replace(load_average_end=_load())


def describe_machine(m: Machine) -> str:
    text = (f"{m.cpu}, {m.usable_cores} usable of {m.logical_cores} logical cores, "
            f"{m.memory_gb:.0f} GB RAM, torch {m.torch} ({m.torch_threads} threads), "
            f"Python {m.python}")
    if m.gpu:
        text += f", GPU: {m.gpu}"
    if m.load_average_start:
        text += f"; load average at start {m.load_average_start[0]:.1f}"
        if m.load_average_end:
            text += f", at end {m.load_average_end[0]:.1f}"
    return text


# --------------------------------------------------------------------------- configs

def train_config(path: Path, logdir: Path, iterations: int, device: str = "cpu",
                 workers: int | None = None, **extra) -> config_mod.Config:
    """The shipped config with validation, time budget and periodic checkpoints off, trained
    on the shipped T91 images (the full config's DIV2K need not be prepared); the config's
    ``num_workers`` capped at the number of cores unless ``workers`` is given."""
    if workers is None:
        cfg_workers = json.loads(path.read_text())["dataset"]["params"].get("num_workers", 0)
        workers = min(cfg_workers, os.cpu_count() or 1)
    overrides = [f"logdir={logdir}", f"iterations={iterations}", "max_minutes=null",
                 "validation=null", "save_every=1000000000", f"device={device}",
                 "dataset.name=t91", f"dataset.root={T91}",
                 f"dataset.params.num_workers={workers}",
                 f"dataset.params.pin_memory={'true' if device == 'cuda' else 'false'}"]
    overrides += [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    return config_mod.load(path, overrides)


def describe_config(name: str, cfg: config_mod.Config) -> str:
    mp = cfg.model_params
    return (f"{name} config ({mp.get('num_feat')} ch/{mp.get('num_block')} blocks, "
            f"batch {cfg.dataset.params.batch_size}, HR {cfg.patch_size})")


def logged_rates(cfg: config_mod.Config) -> list[float]:
    """The it/s of every log window of a finished run, from its metrics.jsonl."""
    from srlib.logbook import read
    return [r["it_per_s"] for r in read(cfg.logdir)["train"]]


# --------------------------------------------------------------------------- report

class Row(NamedTuple):
    """One line of the summary table; ``met`` None when there is no target."""
    section: str
    case: str
    srlib: str
    reference: str
    ratio: str
    target: str = "-"
    met: bool | None = None


def markdown_table(rows: list[Row]) -> str:
    verdict = {True: "yes", False: "**no**", None: ""}
    head = ("| Section | Case | srlib | Plain PyTorch reference | Ratio | Target | Met |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head] + [f"| {r.section} | {r.case} | {r.srlib} | {r.reference} | "
                               f"{r.ratio} | {r.target} | {verdict[r.met]} |" for r in rows])


def fmt_rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")

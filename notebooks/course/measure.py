"""What the notebooks measure alike: training-data summaries, trained runs found and loaded,
scored over benchmark sets beside the published numbers; plain numbers and rows (one dict per
table line). An experiment that is a notebook cell's lesson is written out in that cell."""
import csv
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from srlib import build, checkpoint, config, logbook
from srlib.data.datasets import BenchmarkDataset
from srlib.data.io import atomic_path, image_size, list_images, to_float_tensor
from srlib.data.prepare import prepare_dataset
from srlib.distributed import pick_device
from srlib.evaluate import bicubic_baseline, score_model
from srlib.inference import load_generator
from srlib.metrics import METRICS, rgb_to_y, summarize
from srlib.train import train


# x4, border 4, as each source prints them. SSIM differs between papers' implementations more
# than PSNR does (the two bicubic rows agree on PSNR, not on SSIM): compare PSNR first.
def _published(method: str, source: str, channel: str, set5: tuple, set14: tuple) -> list[dict]:
    return [{"method": method, "dataset": name, "source": source, f"psnr_{channel}": psnr,
             f"ssim_{channel}": ssim} for name, (psnr, ssim) in (("Set5", set5), ("Set14", set14))]


LEDIG = "SRGAN paper (Ledig et al. 2017), table 2"
BASICSR = "BasicSR docs/ModelZoo.md: {}_x4_f64b16_DIV2K_{}_B16G1_wandb (RGB)"
PUBLISHED = [
    *_published("Bicubic", LEDIG, "y", (28.43, 0.8211), (25.99, 0.7486)),
    *_published("Bicubic", "ESRGAN paper (Wang et al. 2018), supplementary table 2", "y",
                (28.42, 0.8104), (26.00, 0.7027)),
    *_published("SRResNet-MSE", LEDIG, "y", (32.05, 0.9019), (28.49, 0.8184)),
    *_published("SRGAN-VGG54", LEDIG, "y", (29.40, 0.8472), (26.02, 0.7397)),
    *_published("MSRResNet", BASICSR.format("001_MSRResNet", "1000k"), "rgb",
                (30.2468, 0.8651), (26.7817, 0.7451)),
    *_published("MSRGAN", BASICSR.format("004_MSRGAN", "400k"), "rgb",
                (28.0158, 0.8087), (24.7474, 0.6623)),
]

TABLE_COLUMNS = ("method", "source", *METRICS)


def save_csv(rows: Sequence[Mapping], path: str | Path, columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with ``columns``, floats to 4 decimals, an empty cell where a row
    has no value; atomically, so an interrupted notebook never leaves half a table."""
    def cell(value):
        return "" if value is None else f"{value:.4f}" if isinstance(value, float) else value

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([cell(r.get(c)) for c in columns] for r in rows)
    return Path(path)


def training_data(cfg: config.Config, prepare: bool = False) -> dict:
    """Count and sizes of a config's training images, and how many are smaller than one HR
    patch (the loader skips those). With ``prepare``, DIV2K/DF2K are fetched and cut first;
    the quick configs' T91 folder needs nothing."""
    root = Path(cfg.dataset.root)
    prepared = build.TRAIN_DATASETS[cfg.dataset.name] == "prepared"
    if prepared and prepare:
        prepare_dataset(cfg.dataset.name, root=root.parent, scale=cfg.scale)
    folder = root / "HR" if prepared else root
    if not folder.is_dir():
        return {"folder": os.path.relpath(folder), "images": 0,
                "note": f"{cfg.dataset.name} is not prepared yet: run with prepare_full = True "
                        f"or `srlib prepare {cfg.dataset.name} --root {root.parent}`"}
    h, w = np.array([image_size(path) for path in list_images(folder)]).T  # headers only
    lr_patch = cfg.patch_size // cfg.scale
    return {"folder": os.path.relpath(folder), "images": len(h),
            "height (min, median, max)": (int(h.min()), int(np.median(h)), int(h.max())),
            "width (min, median, max)": (int(w.min()), int(np.median(w)), int(w.max())),
            "megapixels": round(float(np.sum(h * w)) / 1e6, 2),
            "smaller_than_patch": int(np.sum(np.minimum(h, w) // cfg.scale < lr_patch)),
            "patch_size": cfg.patch_size}


ROOT = Path(__file__).resolve().parents[2]


def run_folder(run_dir: str | Path | None = None) -> Path:
    """Where the chapters' runs live, one rule for all four: ``run_dir`` when given (papermill
    passes the pipeline's folder), else ``$SRLIB_RUN_DIR`` (make test), else ``runs/latest``
    (what the last ``make demo`` made), else ``runs/notebooks`` (a fresh checkout: the
    chapters train there)."""
    chosen = run_dir or os.environ.get("SRLIB_RUN_DIR")
    latest = ROOT / "runs" / "latest"
    folder = Path(chosen) if chosen else latest if latest.is_dir() else ROOT / "runs/notebooks"
    return folder.resolve()


def load_config(path: str | Path, run_dir: str | Path | None = None, *overrides: str):
    """A config whose run (its ``logdir``) and whose start (``generator_path``) are in the
    run folder, under their names in the config: ``runs/quick/msrresnet`` becomes
    ``<run folder>/msrresnet``."""
    folder, raw = run_folder(run_dir), json.loads(Path(path).read_text(encoding="utf-8"))
    moved = [f"logdir={folder / Path(raw['logdir']).name}"]
    if raw.get("generator_path"):  # runs/quick/msrresnet/last.pt -> <folder>/msrresnet/last.pt
        start = Path(raw["generator_path"])
        moved.append(f"generator_path={folder / start.parent.name / start.name}")
    return config.load(path, [*moved, *overrides])


def train_or_reuse(cfg: config.Config, overwrite: bool = False) -> dict:
    """``srlib.train.train``'s summary of ``cfg``'s run, training it unless its logdir already
    holds a finished run and not ``overwrite``: "Run All" never replaces a finished run."""
    last = Path(cfg.logdir) / "last.pt"
    state = checkpoint.load(last) if last.is_file() and not overwrite else {}
    if not state.get("finished"):
        return train(cfg, progress=False, overwrite=overwrite)
    log = logbook.read(cfg.logdir)
    print(f"reusing the finished run in {os.path.relpath(cfg.logdir)} ({state['iteration']} "
          "iterations): set overwrite = True to train it again")
    val = cfg.validation
    bicubic = summarize(bicubic_baseline(val.root, cfg.scale, val.max_images))["psnr_y"] \
        if val else float("nan")
    times = [r["time"] for r in log["train"] if "time" in r]
    return {"iterations": state["iteration"], "best_val_psnr_y": state["best_psnr"],
            "minutes": (times[-1] - times[0]) / 60 if len(times) > 1 else float("nan"),
            "logdir": cfg.logdir, "notes": [n["text"] for n in log["note"]],
            "stopped_by_time": False, "bicubic_psnr_y": bicubic,
            "gain_db": state["best_psnr"] - bicubic}


def load_runs(configs: Mapping[str, str | Path | None], device: str = "auto",
              run_dir: str | Path | None = None) -> tuple[dict[str, torch.nn.Module], list[str]]:
    """The generators of the configs whose run exists, and a note on each that does not.
    A run's ``best.pt`` (best validation Y-PSNR) stands for it, a GAN's ``last.pt``: its goal is
    not PSNR, and its best-PSNR checkpoint is merely the one that moved least from its start.
    Runs are looked for in the run folder (:func:`run_folder`). A config set to ``None`` is
    skipped; the weights a run started from need not exist any more."""
    device = pick_device(device)
    models, notes = {}, []
    for label, path in configs.items():
        if not path:
            continue
        try:
            cfg = config.load(path, ["generator_path=null", "checkpoint=null"])
        except config.ConfigError as err:
            notes.append(f"{label}: left out ({err})")
            continue
        logdir = run_folder(run_dir) / Path(cfg.logdir).name
        weights = logdir / ("last.pt" if cfg.solver == "gan" else "best.pt")
        if weights.is_file():
            models[label] = load_generator(weights, device)
        else:
            notes.append(f"{label}: no run at {os.path.relpath(weights)} (train it with its "
                         "notebook); left out")
    return models, notes


def benchmark(models: Mapping[str, torch.nn.Module], sets: Mapping[str, str | Path],
              scale: int = 4) -> dict:
    """Bicubic and every model (on its own device, fp32) on every set, scored as evaluation
    does: ``{set: {method: {"rows", "mean", "images"}}}``, per-image scores, their means and the
    uint8 SR images as saved (for figures), plus an ``"HR"`` entry holding only images."""
    out = {}
    for set_name, root in sets.items():
        dataset, bicubic = BenchmarkDataset(root, scale), {}
        scored = {"Bicubic": (bicubic_baseline(root, scale, keep=bicubic), bicubic)}
        for label, model in models.items():
            model.eval()
            images = {}
            scored[label] = (score_model(model, dataset, keep=images), images)
        out[set_name] = {"HR": {"images": {it["name"]: it["hr_uint8"] for it in dataset.items}}}
        for label, (rows, images) in scored.items():
            out[set_name][label] = {"rows": rows, "mean": summarize(rows), "images": images}
    return out


def results_table(bench: Mapping, dataset: str, source: str = "this repo",
                  published: Sequence[Mapping] = PUBLISHED) -> list[dict]:
    """This repository's means on ``dataset`` (labelled ``source``), then the published rows
    for it, in :data:`TABLE_COLUMNS`."""
    rows = [{"method": label, "source": source, **{k: entry["mean"][k] for k in METRICS}}
            for label, entry in bench[dataset].items() if "mean" in entry]
    return rows + [{"method": p["method"], "source": p["source"], **{k: p.get(k) for k in METRICS}}
                   for p in published if p["dataset"] == dataset]


def high_frequency_ratio(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """Energy of the Laplacian of SR's Y over that of HR's Y (1 = as much fine detail as HR).
    A cheap, honest stand-in where LPIPS is missing: blurry (pixel-loss) outputs score well
    under 1, GAN outputs near 1 or above (when they invent more texture than there is). It
    says nothing about whether the texture is right, which LPIPS would."""
    def energy(img):
        y = rgb_to_y(img) if img.ndim == 3 else img.astype(np.float64)
        y = y[border:-border, border:-border] if border else y
        lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
        return float(np.mean(lap ** 2))
    return energy(sr) / max(energy(hr), 1e-12)


def load_lpips(device: str = "cpu"):
    """``(lpips_fn, None)`` when LPIPS (AlexNet) can be built, else ``(None, reason)``: which
    of the ``lpips`` package and torchvision's ImageNet AlexNet weights is missing."""
    try:
        import lpips  # an optional package, not a dependency of srlib
    except ImportError:
        return None, "the `lpips` package is not installed (pip install -e '.[lpips]')"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except (OSError, RuntimeError) as exc:  # AlexNet weights not downloadable or corrupt
        return None, (f"LPIPS could not load its AlexNet ImageNet weights "
                      f"({type(exc).__name__}: {exc})")

    @torch.no_grad()
    def distance(sr: np.ndarray, hr: np.ndarray) -> float:
        def as_input(img):  # uint8 HxW[x3] -> 1x3xHxW in [-1, 1]
            return to_float_tensor(img).expand(3, -1, -1)[None].to(device) * 2 - 1
        return float(net(as_input(sr), as_input(hr)))
    return distance, None

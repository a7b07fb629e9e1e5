"""Measurements the notebooks show: resize methods, the scoring protocol, colour shifts,
parameter counts, benchmark tables beside published numbers, perception vs distortion.

Everything here returns plain numbers or lists of row dicts (one dict per table line), so the
notebooks stay a few calls long and every number has a test with a known answer
(``tests/test_analysis.py``). Figures live in :mod:`srlib.plotting`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from srlib.data.imresize import imresize, modcrop
from srlib.data.io import list_images, load_image
from srlib.evaluate import METRICS, make_lr, score_pair, summarize
from srlib.metrics import psnr, rgb_to_y, ssim

PathLike = Union[str, Path]
CHANNELS = ("R", "G", "B")

# --------------------------------------------------------------------------- published numbers
# x4, Y channel of BT.601 with a 4-pixel border unless a row says otherwise (DESIGN.md section 4).
# SSIM differs between papers' implementations more than PSNR does; compare PSNR first.
PUBLISHED = [
    {"method": "Bicubic", "dataset": "Set5", "psnr_y": 28.42, "ssim_y": 0.8104,
     "source": "MATLAB protocol, as printed by SRCNN/EDSR-era papers"},
    {"method": "Bicubic", "dataset": "Set14", "psnr_y": 26.00, "ssim_y": 0.7027,
     "source": "MATLAB protocol, as printed by SRCNN/EDSR-era papers"},
    {"method": "SRResNet-MSE", "dataset": "Set5", "psnr_y": 32.05, "ssim_y": 0.9019,
     "source": "SRGAN paper (Ledig et al. 2017), ImageNet, 1e6 it"},
    {"method": "SRResNet-MSE", "dataset": "Set14", "psnr_y": 28.49, "ssim_y": 0.8184,
     "source": "SRGAN paper (Ledig et al. 2017), ImageNet, 1e6 it"},
    {"method": "SRGAN-VGG54", "dataset": "Set5", "psnr_y": 29.40, "ssim_y": 0.8472,
     "source": "SRGAN paper (Ledig et al. 2017)"},
    {"method": "SRGAN-VGG54", "dataset": "Set14", "psnr_y": 26.02, "ssim_y": 0.7397,
     "source": "SRGAN paper (Ledig et al. 2017)"},
    {"method": "MSRResNet", "dataset": "Set5", "psnr_rgb": 30.25,
     "source": "BasicSR model zoo, DIV2K, 1e6 it (RGB only)"},
]

TABLE_COLUMNS = ("method", "source", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


# --------------------------------------------------------------------------- tables

def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def format_rows(rows: Sequence[Mapping], columns: Sequence[str], digits: Optional[Mapping] = None,
                title: str = "") -> str:
    """A plain-text table of ``rows`` (dicts); missing values print as ``-``.

    ``digits`` maps a column to its decimals (default: 4 for names starting with ``ssim``,
    2 otherwise).
    """
    digits = dict(digits or {})
    places = {c: digits.get(c, 4 if c.startswith("ssim") else 2) for c in columns}
    cells = [[_cell(r.get(c), places[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    header = line(list(columns))
    out = ([title] if title else []) + [header, "-" * len(header)] + [line(c) for c in cells]
    return "\n".join(out)


def save_csv(rows: Sequence[Mapping], path: PathLike, columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with ``columns`` (empty cells where a row lacks a value)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else
                             (f"{r[c]:.4f}" if isinstance(r[c], float) else r[c]) for c in columns])
    return path


def _shown(path: PathLike) -> str:
    """``path`` relative to the working directory when it is below it or near (for printing)."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("../../") else str(path)


def format_mapping(values: Mapping, digits: int = 2) -> str:
    """``key: value`` lines (floats with ``digits`` decimals), for small summaries."""
    width = max((len(str(k)) for k in values), default=0)
    return "\n".join(f"{str(k):<{width}}  {_cell(v, digits)}" for k, v in values.items())


# --------------------------------------------------------------------------- resizing

RESIZE_METHODS = ("matlab", "pillow", "torchvision", "no_antialias")


def resize(img: np.ndarray, scale: float, method: str = "matlab") -> np.ndarray:
    """Bicubic resize of a uint8 HxW[x3] image by ``scale`` with one library's bicubic.

    ``matlab``: srlib's MATLAB-compatible ``imresize`` (what papers used);
    ``pillow``: ``Image.resize(..., BICUBIC)`` (antialiased when shrinking);
    ``torchvision``: ``transforms.v2.functional.resize(..., BICUBIC, antialias=True)``, whose
    uint8 kernel follows Pillow's;
    ``no_antialias``: ``F.interpolate(..., mode="bicubic")`` without antialiasing (as OpenCV's
    ``INTER_CUBIC`` also does): shrinking then samples the image instead of low-pass filtering it.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"resize expects a uint8 image, got {img.dtype}")
    h, w = img.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    if method == "matlab":
        return imresize(img, scale)
    if method == "pillow":
        return np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.BICUBIC))
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; valid: {RESIZE_METHODS}")
    t = torch.from_numpy(np.array(img))  # a writable copy
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    if method == "torchvision":
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF
        out = TF.resize(t, [out_h, out_w], interpolation=InterpolationMode.BICUBIC,
                        antialias=True)
    else:
        out = F.interpolate(t[None].double(), size=(out_h, out_w), mode="bicubic",
                            align_corners=False)[0]
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out[0].numpy() if img.ndim == 2 else out.permute(1, 2, 0).numpy()


def resize_comparison(folder: PathLike, scale: int = 4,
                      methods: Sequence[str] = RESIZE_METHODS) -> list[dict]:
    """How far each library's x1/scale LR is from MATLAB's, and what it does to the baseline.

    One row per method: ``lr_psnr`` (dB, RGB, whole image) of its LR against the MATLAB LR,
    averaged over the folder; ``lr_max_diff`` (largest absolute pixel difference, 0-255);
    ``psnr_y`` / ``ssim_y``: the bicubic baseline (Y, border = scale) when both the downscale
    and the upscale use that method.
    """
    hrs = [modcrop(load_image(p), scale) for p in list_images(folder)]
    reference = [resize(hr, 1 / scale, "matlab") for hr in hrs]
    rows = []
    for method in methods:
        lr_psnr, max_diff, base = [], 0, []
        for hr, ref in zip(hrs, reference):
            lr = resize(hr, 1 / scale, method)
            lr_psnr.append(psnr(lr, ref, border=0, y_channel=False))
            max_diff = max(max_diff, int(np.abs(lr.astype(int) - ref.astype(int)).max()))
            sr = resize(lr, scale, method)
            base.append(score_pair(sr, hr, border=scale))
        rows.append({"method": method, "lr_psnr": float(np.mean(lr_psnr)),
                     "lr_max_diff": max_diff, **{k: v for k, v in summarize(base).items()
                                                 if k in ("psnr_y", "ssim_y")}})
    return rows


def _luma_full_range(img: np.ndarray) -> np.ndarray:
    """Pillow's ``convert("L")``: 0.299 R + 0.587 G + 0.114 B on 0..255 (JPEG's full-range Y)."""
    return img if img.ndim == 2 else np.asarray(Image.fromarray(img).convert("L"))


def protocol_table(folder: PathLike, scale: int = 4) -> list[dict]:
    """The same bicubic images scored several ways; only the first row is the papers' protocol.

    Rows: BT.601 Y on [16, 235] or RGB, each with border = scale and with no border, then
    full-range luma (0..255, what Pillow's ``convert("L")`` gives) with border = scale.
    """
    pairs = []
    for path in list_images(folder):
        hr, lr = make_lr(load_image(path), scale)
        pairs.append((imresize(lr, float(scale)), hr))

    def row(channel, border, prep, y):
        scored = [(prep(s), prep(h)) for s, h in pairs]
        return {"channel": channel, "border": border,
                "psnr": float(np.mean([psnr(s, h, border, y) for s, h in scored])),
                "ssim": float(np.mean([ssim(s, h, border, y) for s, h in scored]))}

    same = lambda img: img  # noqa: E731
    return [row("Y, BT.601 [16,235]", scale, same, True),
            row("Y, BT.601 [16,235]", 0, same, True),
            row("RGB", scale, same, False),
            row("RGB", 0, same, False),
            row("luma 0-255 (PIL 'L')", scale, _luma_full_range, False)]


def y_channel(img: np.ndarray) -> np.ndarray:
    """The channel the protocol scores: BT.601 Y for colour, the values for gray (float64)."""
    img = np.asarray(img)
    return rgb_to_y(img) if img.ndim == 3 else img.astype(np.float64)


# --------------------------------------------------------------------------- training data

def benchmark_item(folder: PathLike, name: str, scale: int = 4) -> dict:
    """One image of a benchmark folder as the evaluation dataset gives it (``lr`` tensor,
    ``hr_uint8``, ...), looked up by its name."""
    from srlib.registry import build_eval_dataset
    dataset = build_eval_dataset("folder", folder, scale=scale)
    for item in dataset.items:
        if item["name"] == name:
            return dict(item)
    raise KeyError(f"no image named {name!r} in {folder}; "
                   f"there are {[it['name'] for it in dataset.items]}")


def folder_summary(folder: PathLike, patch_size: int = 96, scale: int = 4) -> dict:
    """Count and sizes of the images in a folder, and how many are too small for a patch."""
    sizes = []
    for path in list_images(folder):
        with Image.open(path) as im:
            sizes.append((im.height, im.width))
    h = np.array([s[0] for s in sizes])
    w = np.array([s[1] for s in sizes])
    lr = patch_size // scale
    too_small = int(np.sum(np.minimum(h // scale, w // scale) < lr))
    return {"folder": _shown(folder), "images": len(sizes),
            "height (min, median, max)": (int(h.min()), int(np.median(h)), int(h.max())),
            "width (min, median, max)": (int(w.min()), int(np.median(w)), int(w.max())),
            "megapixels": float(np.sum(h * w) / 1e6),
            "smaller_than_patch": too_small, "patch_size": patch_size}


def training_data(cfg, prepare: bool = False) -> dict:
    """Summary of a config's training images; with ``prepare``, fetch and cut DIV2K/DF2K first.

    The quick configs train on the shipped T91 folder, which needs no preparation.
    """
    name, root = cfg.dataset.name, Path(cfg.dataset.root)
    prepared = name in ("div2k", "df2k")
    if prepared and prepare:
        from srlib.data.prepare import prepare_dataset
        prepare_dataset(name, root=root.parent, scale=cfg.scale)
    folder = root / "HR" if prepared else root
    if not folder.is_dir():
        return {"folder": _shown(folder), "images": 0,
                "note": f"{name} is not prepared yet: run with prepare_full = True "
                        f"or `srlib prepare {name} --root {root.parent}`"}
    return folder_summary(folder, cfg.patch_size, cfg.scale)


def augmented_patches(root: PathLike, patch_size: int = 96, scale: int = 4, count: int = 6,
                      seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (LR, HR) uint8 training patches exactly as the training loader draws them."""
    from srlib.data.datasets import PairedPatchDataset
    from srlib.data.io import to_uint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "skipped N small images": folder_summary reports it
        # no cache: a prepared DIV2K folder holds tens of thousands of crops; six are needed
        dataset = PairedPatchDataset(root, patch_size=patch_size, scale=scale, cache=False)
    torch.manual_seed(seed)
    picks = torch.randperm(len(dataset))[:count].tolist()
    return [(to_uint8(item["lr"]), to_uint8(item["hr"])) for item in (dataset[i] for i in picks)]


# --------------------------------------------------------------------------- models

def parameter_groups(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per top-level module of ``model`` (in definition order), plus ``total``."""
    groups = {name: sum(p.numel() for p in child.parameters())
              for name, child in model.named_children()}
    groups = {k: v for k, v in groups.items() if v}
    groups["total"] = sum(p.numel() for p in model.parameters())
    return groups


def parameter_table(models: Mapping[str, torch.nn.Module]) -> list[dict]:
    """Rows ``{"group", <model label>: count, ...}`` comparing models with the same layout."""
    counts = {label: parameter_groups(m) for label, m in models.items()}
    names: list[str] = []
    for c in counts.values():
        names += [n for n in c if n not in names and n != "total"]
    return [{"group": n, **{label: c.get(n) for label, c in counts.items()}}
            for n in names + ["total"]]


# --------------------------------------------------------------------------- colour

def _float255(img) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        arr = img.detach().cpu().float().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = arr.transpose(1, 2, 0)
        return arr.astype(np.float64) * 255.0
    arr = np.asarray(img)
    return arr.astype(np.float64) if arr.dtype == np.uint8 else arr.astype(np.float64) * 255.0


def colour_shift(sr, hr, border: int = 0) -> np.ndarray:
    """Mean of ``sr - hr`` per channel (R, G, B) in 0-255 units.

    uint8 arrays are taken as 0-255, float arrays and CHW tensors as [0, 1]. A gray image
    counts as R = G = B. ``border`` pixels are shaved from every side first.
    """
    a, b = _float255(sr), _float255(hr)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: sr {a.shape} vs hr {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None].repeat(3, axis=2), b[..., None].repeat(3, axis=2)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return (a - b).reshape(-1, a.shape[-1]).mean(axis=0)


def colour_shift_rows(pairs: Iterable[tuple[str, object, object]], border: int = 4) -> list[dict]:
    """``(name, sr, hr)`` -> rows ``{"name", "R", "G", "B"}`` and a last ``mean`` row.

    The ``mean`` row averages the signed shifts (a cast shared by all images survives it);
    ``abs`` is the mean over channels of their absolute values.
    """
    rows = []
    for name, sr, hr in pairs:
        shift = colour_shift(sr, hr, border)
        rows.append({"name": name, **dict(zip(CHANNELS, map(float, shift)))})
    if rows:
        mean = {c: float(np.mean([r[c] for r in rows])) for c in CHANNELS}
        rows.append({"name": "mean", **mean})
    for r in rows:
        r["abs"] = float(np.mean([abs(r[c]) for c in CHANNELS]))
    return rows


def colour_shift_table(bench_set: Mapping, method: str, border: int = 4) -> list[dict]:
    """:func:`colour_shift_rows` of one method of a :func:`benchmark` set against its HR."""
    hr = bench_set["HR"]["images"]
    return colour_shift_rows(((n, bench_set[method]["images"][n], hr[n]) for n in hr), border)


def mean_colour_shifts(bench_set: Mapping, border: int = 4) -> dict[str, dict]:
    """``{method: {"R", "G", "B", "abs"}}``: the mean row of :func:`colour_shift_table` per method."""
    return {m: colour_shift_table(bench_set, m, border)[-1] for m, e in bench_set.items()
            if "mean" in e}


def crop_tensor(img: np.ndarray, box: Sequence[int]) -> torch.Tensor:
    """A ``(top, left, h, w)`` crop of a uint8 HxWx3 image as a 1x3xhxw float tensor in [0, 1]."""
    top, left, h, w = box
    crop = np.array(np.asarray(img)[top:top + h, left:left + w])  # a writable copy
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0


def perceptual_from_config(cfg):
    """The config's perceptual loss term, built exactly as the training solver builds it."""
    from srlib.solvers.loss_terms import build_term
    term = next((t for t in cfg.loss_fn if t.name == "perceptual"), None)
    if term is None:
        raise ValueError(f"{cfg.logdir}: this config has no perceptual loss term")
    return build_term(term, cfg)


# How images in [0, 1] can be mapped before an ImageNet VGG sees them. Only the first is right.
VGG_INPUTS = {
    "(x - mean) / std": lambda x, m, s: (x - m) / s,
    "x raw, not normalised": lambda x, m, s: x,
    "2x - 1 with [0,1] mean/std": lambda x, m, s: (2 * x - 1 - m) / s,
}

# Perceptual-loss set-ups: (mapping of SR, mapping of HR). The last is the one-sided mistake:
# the data loader normalises HR (as classification transforms do), the generator's output is
# fed to VGG as it is.
VGG_LOSS_SETUPS = {
    "right: both (x - mean) / std": ("(x - mean) / std", "(x - mean) / std"),
    "both raw [0,1]": ("x raw, not normalised", "x raw, not normalised"),
    "both [-1,1], [0,1] mean/std": ("2x - 1 with [0,1] mean/std", "2x - 1 with [0,1] mean/std"),
    "HR normalised, SR raw": ("x raw, not normalised", "(x - mean) / std"),
}


def vgg_input_stats(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> list[dict]:
    """Per-channel mean and std of what VGG receives for an image in [0, 1], per mapping.

    ImageNet VGG was trained on inputs with about mean 0 and std 1 per channel; anything else
    sits in a part of the input space its filters never saw.
    """
    x = image if image.dim() == 4 else image[None]
    rows = []
    for label, fn in VGG_INPUTS.items():
        v = fn(x, mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1))
        m, s = v.mean(dim=(0, 2, 3)), v.std(dim=(0, 2, 3))
        rows.append({"input": label, **{f"mean_{c}": float(m[i]) for i, c in enumerate(CHANNELS)},
                     **{f"std_{c}": float(s[i]) for i, c in enumerate(CHANNELS)}})
    return rows


def _perceptual(loss, sr: torch.Tensor, hr: torch.Tensor, setup: str) -> torch.Tensor:
    """``loss``'s distance (its VGG, rescale and criterion) with the inputs mapped per ``setup``."""
    sr_map, hr_map = (VGG_INPUTS[k] for k in VGG_LOSS_SETUPS[setup])
    with torch.no_grad():
        target = loss.vgg(hr_map(hr, loss.mean, loss.std)) * loss.rescale
    feats = loss.vgg(sr_map(sr, loss.mean, loss.std)) * loss.rescale
    return F.mse_loss(feats, target) if loss.criterion == "mse" else F.l1_loss(feats, target)


def colour_drift(loss, start: torch.Tensor, hr: torch.Tensor, cast: Sequence[float] = (0, 0, 0),
                 setups: Optional[Sequence[str]] = None, steps: int = 30, lr: float = 2e-3
                 ) -> list[dict]:
    """Where does the perceptual loss alone push an image's colours? One row per set-up.

    ``start`` (1x3xHxW in [0, 1], e.g. the MSE model's SR of a crop) is first made colour-neutral
    (its per-channel mean is set to HR's), then ``cast`` (0-255 units per channel) is added.
    ``steps`` of Adam on its pixels towards ``hr`` follow. Reported: the mean SR - HR shift per
    channel afterwards (0-255 units) and, as means over the channels of absolute values, the
    shift ``before`` and ``after``. A right set-up keeps a neutral start neutral and shrinks a
    cast; a broken one moves colours by itself or leaves a cast in place.
    """
    x0 = (start if start.dim() == 4 else start[None]).detach().float()
    target = (hr if hr.dim() == 4 else hr[None]).float()
    x0 = x0 - (x0 - target).mean(dim=(2, 3), keepdim=True)
    x0 = x0 + torch.tensor(cast, dtype=x0.dtype).view(1, 3, 1, 1) / 255.0
    before = colour_shift(x0[0], target[0])
    rows = []
    for setup in setups or VGG_LOSS_SETUPS:
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            _perceptual(loss, x, target, setup).backward()
            opt.step()
        after = colour_shift(x.detach()[0], target[0])
        rows.append({"setup": setup, "before": float(np.abs(before).mean()),
                     **dict(zip(CHANNELS, map(float, after))), "after": float(np.abs(after).mean())})
    return rows


def wrap_to_uint8(x: torch.Tensor) -> np.ndarray:
    """CHW float -> HxWx3 uint8 the careless way: ``(x * 255).round()`` cast without a clamp.

    A float-to-uint8 cast of an out-of-range value is undefined in C; common x86 builds of
    torch and numpy wrap it modulo 256 (so 1.02 -> 4 and -0.02 -> 251), which is done here
    explicitly so the result is the same on every machine.
    """
    v = torch.round(x.detach().float().cpu() * 255.0).to(torch.int64).remainder(256)
    return v.to(torch.uint8).permute(1, 2, 0).numpy()


def out_of_range(x: torch.Tensor) -> dict:
    """Fraction of raw output values below 0 and above 1 (before any clamp)."""
    x = x.detach().float()
    return {"below_0": float((x < 0).float().mean()), "above_1": float((x > 1).float().mean()),
            "min": float(x.min()), "max": float(x.max())}


@torch.inference_mode()
def raw_output(model: torch.nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The generator's output for one CHW LR tensor, unclamped (what the loss sees)."""
    device = next(model.parameters()).device
    return model(lr[None].to(device)).float().cpu()[0]


# --------------------------------------------------------------------------- runs and benchmarks

def run_dir(config_path: PathLike) -> Path:
    """The ``logdir`` of a config file, resolved as training resolves it (nothing validated)."""
    from srlib.config import project_dir_of
    path = Path(config_path)
    logdir = Path(json.loads(path.read_text(encoding="utf-8"))["logdir"])
    return logdir if logdir.is_absolute() else project_dir_of(path) / logdir


def checkpoint_name(config_path: PathLike) -> str:
    """Which checkpoint represents a run: ``best.pt`` (best validation Y-PSNR) for PSNR-trained
    models, ``last.pt`` for GANs, whose goal is not PSNR (their best-PSNR checkpoint is simply
    the one that has moved least from the generator they started from)."""
    solver = json.loads(Path(config_path).read_text(encoding="utf-8")).get("solver", "std")
    return "last.pt" if solver == "gan" else "best.pt"


def find_checkpoints(configs: Mapping[str, Optional[PathLike]]
                     ) -> tuple[dict[str, Path], list[str]]:
    """``{label: checkpoint}`` for the configs whose run exists, and a note for each missing one."""
    found, notes = {}, []
    for label, config_path in configs.items():
        if not config_path:
            continue
        ckpt = run_dir(config_path) / checkpoint_name(config_path)
        if ckpt.is_file():
            found[label] = ckpt
        else:
            notes.append(f"{label}: no run at {_shown(ckpt)} (train it with "
                         f"`srlib train --config {_shown(config_path)}` or its notebook); left out")
    return found, notes


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_runs(configs: Mapping[str, Optional[PathLike]], device: str = "auto"
              ) -> tuple[dict[str, torch.nn.Module], list[str]]:
    """Generators of the runs that exist (see :func:`find_checkpoints`), and notes on the rest."""
    from srlib.inference import load_generator
    found, notes = find_checkpoints(configs)
    device = resolve_device(device)
    return {label: load_generator(path, device) for label, path in found.items()}, notes


def benchmark(models: Mapping[str, torch.nn.Module], sets: Mapping[str, PathLike],
              device: str = "cpu", scale: int = 4) -> dict:
    """Score bicubic and every model on every set with the evaluation protocol.

    Returns ``{set: {method: {"rows": per-image scores, "mean": means, "images": {name: SR}}}}``
    with an ``"HR"`` entry (images only) per set; SR images are uint8 as they would be saved.
    """
    from srlib.inference import to_uint8_image, upscale
    from srlib.registry import build_eval_dataset
    device = resolve_device(device)
    out = {}
    for set_name, root in sets.items():
        dataset = build_eval_dataset("folder", root, scale=scale)
        items = [dataset[i] for i in range(len(dataset))]
        per_set = {"HR": {"images": {it["name"]: it["hr_uint8"] for it in items}}}
        candidates: dict[str, Callable] = {
            "Bicubic": lambda it: imresize(it["lr_uint8"], float(scale))}
        for label, model in models.items():
            model.to(device).eval()
            candidates[label] = lambda it, m=model: to_uint8_image(
                upscale(m, it["lr"], scale=scale), gray=it["gray"])
        for label, make in candidates.items():
            images, rows = {}, []
            for it in items:
                sr = images[it["name"]] = make(it)
                rows.append({"name": it["name"], **score_pair(sr, it["hr_uint8"], border=scale)})
            per_set[label] = {"rows": rows, "mean": summarize(rows), "images": images}
        out[set_name] = per_set
    return out


def results_table(bench: Mapping, dataset: str, source: str = "this repo",
                  published: Sequence[Mapping] = PUBLISHED) -> list[dict]:
    """This repository's means for ``dataset`` followed by the published rows for it."""
    rows = [{"method": label, "source": source, **{k: entry["mean"][k] for k in METRICS}}
            for label, entry in bench[dataset].items() if "mean" in entry]
    rows += [{"method": p["method"], "source": p["source"], **{k: p.get(k) for k in METRICS}}
             for p in published if p["dataset"] == dataset]
    return rows


def high_frequency_ratio(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """Energy of the Laplacian of SR's Y over that of HR's Y (1 = as much fine detail as HR).

    A cheap, honest stand-in for a perceptual metric: blurry (MSE-trained) outputs score well
    under 1, GAN outputs closer to 1 (or above, when they invent more texture than there is).
    It says nothing about whether the texture is right, which LPIPS would.
    """
    def energy(img):
        y = y_channel(img)
        if border:
            y = y[border:-border, border:-border]
        lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
        return float(np.mean(lap ** 2))
    return energy(sr) / max(energy(hr), 1e-12)


def load_lpips(device: str = "cpu"):
    """``(lpips_fn, None)`` when LPIPS (AlexNet) can be built, else ``(None, reason)``.

    LPIPS needs the ``lpips`` package and torchvision's ImageNet AlexNet weights, which are
    downloaded on first use; on a machine without either this explains which is missing.
    """
    try:
        import lpips  # type: ignore
    except ImportError:
        return None, "the `lpips` package is not installed (pip install lpips)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as exc:  # download or load failure: no AlexNet weights here
        return None, f"LPIPS could not load its AlexNet ImageNet weights ({type(exc).__name__}: {exc})"

    @torch.no_grad()
    def distance(sr: np.ndarray, hr: np.ndarray) -> float:
        def t(img):
            img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
            return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() \
                .div(127.5).sub(1).to(device)
        return float(net(t(sr), t(hr)))
    return distance, None


def perception_distortion(bench: Mapping, dataset: str, lpips_fn=None) -> list[dict]:
    """One point per method: mean Y-PSNR (distortion) and LPIPS or the detail ratio (perception)."""
    rows = []
    hr = bench[dataset]["HR"]["images"]
    for label, entry in bench[dataset].items():
        if "mean" not in entry:
            continue
        pairs = [(entry["images"][n], hr[n]) for n in hr]
        row = {"method": label, "psnr_y": entry["mean"]["psnr_y"],
               "detail_ratio": float(np.mean([high_frequency_ratio(s, h) for s, h in pairs]))}
        if lpips_fn is not None:
            row["lpips"] = float(np.mean([lpips_fn(s, h) for s, h in pairs]))
        rows.append(row)
    return rows

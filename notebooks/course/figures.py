"""Figures for the notebooks, each drawn from numbers computed elsewhere (``metrics.jsonl``,
:func:`course.measure.benchmark`) and returned as a matplotlib Figure. Images are drawn pixel
by pixel (nearest) at ``IMAGE_DPI``, zoomed crops so that every image pixel covers ``ZOOM`` x
``ZOOM`` pixels of the PNG: SR methods differ in single pixels."""
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from srlib import logbook
from srlib.data.io import atomic_path

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels
IMAGE_DPI = 100  # figure pixels per inch of image figures
ZOOM = 4  # figure pixels per image pixel in a zoomed crop


def notebook_style() -> None:
    """Small fonts and compact line plots. Inline figures stay PNG (the default): JPEG would
    smear exactly the pixel-level differences the zoomed crops are there to show."""
    plt.rcParams.update({"figure.dpi": 80, "font.size": 9, "axes.titlesize": 9})


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as the notebook shows it (its own dpi), tightly cropped, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix[1:] or "png", dpi="figure", bbox_inches="tight")
    return Path(path)


# --------------------------------------------------------------------------- training curves

def load_metrics(logdir: str | Path) -> dict[str, list[dict]]:
    """A run's ``metrics.jsonl`` records by kind: ``{"train", "val", "note"}``."""
    return logbook.read(logdir)


def _plot(ax, records: Sequence[Mapping], key: str, style: str = "-", label: str | None = None,
          weight: float = 1) -> None:
    points = [(r["iteration"], weight * r[key]) for r in records if key in r]
    ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)


def _finish(ax, ylabel: str, log: bool = False) -> None:
    """Labels, grid and legend; the x axis starts at iteration 0 (the first validation)."""
    ax.set(xlabel="iteration", ylabel=ylabel, xlim=(0, None))
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _validation_panel(ax, metrics: Mapping, bicubic_psnr: float | None) -> None:
    _plot(ax, metrics["val"], "psnr_y", "o-", label="model")
    if bicubic_psnr is not None:
        ax.axhline(bicubic_psnr, color="gray", ls="--", label=f"bicubic {bicubic_psnr:.2f} dB")
    _finish(ax, "validation Y-PSNR (dB)")


def plot_training_curves(metrics: Mapping, bicubic_psnr: float | None = None, title: str = ""):
    """Training loss (log scale) and validation Y-PSNR against iterations."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.4))
    _plot(ax_loss, metrics["train"], "loss")
    _finish(ax_loss, "training loss", log=True)
    _validation_panel(ax_val, metrics, bicubic_psnr)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gan_curves(metrics: Mapping, weights: Mapping[str, float],
                    bicubic_psnr: float | None = None):
    """GAN training: D(real) and D(fake); each loss term of ``weights`` (``{name: weight}``,
    the config's ``loss_fn``) as weight x value, as it enters G's loss, beside their sum (the
    logged ``loss``); validation Y-PSNR. Terms of weight 0 add nothing and are left out."""
    fig, (ax_d, ax_terms, ax_val) = plt.subplots(1, 3, figsize=(13, 3.4))
    _plot(ax_d, metrics["train"], "d_real", label="D(real HR)")
    _plot(ax_d, metrics["train"], "d_fake", label="D(SR)")
    ax_d.axhline(0.5, color="gray", ls=":", lw=1)
    ax_d.set_ylim(0, 1)
    _finish(ax_d, "mean probability of 'real'")
    for term, weight in weights.items():
        if weight > 0 and any(term in r for r in metrics["train"]):
            _plot(ax_terms, metrics["train"], term, label=f"{weight:g} x {term}", weight=weight)
    if any("loss" in r for r in metrics["train"]):
        _plot(ax_terms, metrics["train"], "loss", "k--", label="G's loss (their sum)")
    _finish(ax_terms, "weight x loss term", log=True)
    _validation_panel(ax_val, metrics, bicubic_psnr)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- images

def _show(ax, img, title: str = "", vmax: float = 255):
    img = np.asarray(img)
    shown = ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=vmax,
                      interpolation="nearest")
    ax.set(xticks=[], yticks=[], title=title)
    return shown


def detail_box(img: np.ndarray, size: int = 48, stride: int = 8) -> Box:
    """The ``size`` x ``size`` window with the most fine detail (gradient energy) in ``img``:
    where images have texture and edges is where SR methods differ most."""
    g = np.asarray(img, dtype=np.float64)
    g = g.mean(axis=2) if g.ndim == 3 else g
    size = min(size, *g.shape[:2])
    energy = np.zeros_like(g)
    energy[:, 1:] += np.diff(g, axis=1) ** 2
    energy[1:, :] += np.diff(g, axis=0) ** 2
    s = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # s[i, j]: sum of energy[:i, :j]
    rows, cols = g.shape[0] - size + 1, g.shape[1] - size + 1  # window positions per axis
    windows = s[size:, size:] - s[:rows, size:] - s[size:, :cols] + s[:rows, :cols]
    windows = windows[::stride, ::stride]
    top, left = np.unravel_index(np.argmax(windows), windows.shape)  # the first best one
    return int(top) * stride, int(left) * stride, size, size


def image_row(images: Mapping[str, np.ndarray], box: Box | None = None, panel: float = 3.0):
    """Images side by side under their titles, drawn pixel by pixel: uint8 ones on 0-255, any
    other 2-D array (a difference map) in grey from 0 to its maximum, with a colour bar. With
    ``box``, only that crop is drawn."""
    fig, axes = plt.subplots(1, len(images), figsize=(panel * len(images), panel),
                             squeeze=False, dpi=IMAGE_DPI)
    for ax, (title, img) in zip(axes[0], images.items()):
        img = np.asarray(img)
        if box is not None:
            top, left, h, w = box
            img = img[top:top + h, left:left + w]
        shown = _show(ax, img, title, 255 if img.dtype == np.uint8 else max(img.max(), 1))
        if img.dtype != np.uint8:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label="grey levels")
    fig.tight_layout()
    return fig


def patch_grid(pairs: Sequence[tuple[np.ndarray, np.ndarray]], panel: float = 1.8):
    """Training pairs: LR patches (top row, drawn at the size of their HR patch) above HR."""
    fig, axes = plt.subplots(2, len(pairs), figsize=(panel * len(pairs), 2 * panel + 0.3),
                             squeeze=False, dpi=IMAGE_DPI)
    for c, (lr, hr) in enumerate(pairs):
        _show(axes[0, c], lr, f"LR {lr.shape[1]}x{lr.shape[0]}")
        _show(axes[1, c], hr, f"HR {hr.shape[1]}x{hr.shape[0]}")
    fig.tight_layout()
    return fig


def crop_grid(images: Mapping[str, Mapping[str, np.ndarray]],
              crops: Sequence[tuple[str, Box, str]], panel: float = 2.2):
    """Rows = crops ``(image name, box, what to look at)``, columns = methods (``images[method]
    [name]``, uint8): each crop drawn on its own, pixel by pixel, large enough to see texture
    (a 48-pixel crop at 2.2 inches is about 4.6 figure pixels per image pixel)."""
    methods = list(images)
    fig, axes = plt.subplots(len(crops), len(methods), squeeze=False, dpi=IMAGE_DPI,
                             figsize=(panel * len(methods), panel * len(crops) + 0.3))
    for r, (name, (top, left, h, w), caption) in enumerate(crops):
        for c, method in enumerate(methods):
            _show(axes[r, c], images[method][name][top:top + h, left:left + w],
                  method if r == 0 else "")
        axes[r, 0].set_ylabel(f"{name}\n{caption}", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- crops beside images

def crops_beside(bench_set: Mapping, methods: Sequence[str], boxes: Mapping[str, Box],
              zoom: int = ZOOM, overview: float = 2.4):
    """One row per image of ``boxes`` (``{name: (top, left, height, width)}``): the HR image
    with its box framed in yellow, then that box of each method of one
    :func:`course.measure.benchmark` set, in panels of their own beside it (nothing is drawn
    over the image), each image pixel ``zoom`` x ``zoom`` figure pixels. Titles give each
    method's Y-PSNR / SSIM on the whole image."""
    side = max(max(h, w) for _, _, h, w in boxes.values()) * zoom / IMAGE_DPI  # inches
    height = max(overview, side) + 0.45  # room for two title lines
    fig, axes = plt.subplots(len(boxes), 1 + len(methods), squeeze=False, dpi=IMAGE_DPI,
                             figsize=(overview + side * len(methods) + 0.3, height * len(boxes)),
                             gridspec_kw={"width_ratios": [overview] + [side] * len(methods)})
    for r, (name, (top, left, h, w)) in enumerate(boxes.items()):
        _show(axes[r, 0], bench_set["HR"]["images"][name], f"{name}: HR, box {w}x{h}")
        axes[r, 0].add_patch(plt.Rectangle((left - 0.5, top - 0.5), w, h, fill=False,
                                           edgecolor="yellow", linewidth=1.5))
        for c, method in enumerate(methods, start=1):
            crop = bench_set[method]["images"][name][top:top + h, left:left + w]
            scores = [row for row in bench_set[method].get("rows", []) if row["name"] == name]
            _show(axes[r, c], crop, method + "".join(f"\n{s['psnr_y']:.2f} dB / {s['ssim_y']:.3f}"
                                                     for s in scores))
            axes[r, c].spines[:].set(edgecolor="yellow", linewidth=1.5)
    fig.tight_layout()
    return fig

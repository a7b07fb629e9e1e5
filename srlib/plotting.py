"""Figures for the notebooks: comparison grids with zoomed crops, training curves, the
sub-pixel (PixelShuffle) picture, training patches, colour shifts, perception vs distortion.

Every function returns a matplotlib Figure made through pyplot (so a notebook shows it) and
draws only: the numbers come from :mod:`srlib.analysis`, ``srlib.evaluate`` or a run's
``metrics.jsonl``. :func:`save` writes a figure where the results page expects it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

PathLike = Union[str, Path]
Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels

_META_KEYS = {"kind", "iteration", "loss", "it_per_s", "lr", "d_loss", "d_real", "d_fake"}


def notebook_style(dpi: int = 80, jpeg_quality: Optional[int] = 85) -> None:
    """Compact figures for notebooks: small fonts, ``dpi`` on screen, and (inside IPython)
    inline figures as JPEG, which keeps photo grids in the committed notebooks at a fraction
    of their PNG size. ``jpeg_quality=None`` keeps PNG."""
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": 100, "font.size": 9,
                         "axes.titlesize": 9})
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if jpeg_quality is not None and get_ipython() is not None:
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": jpeg_quality})


def save(fig, path: PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (folders created), tightly cropped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------- metrics.jsonl

def load_metrics(logdir: PathLike) -> dict[str, list[dict]]:
    """The latest run's ``metrics.jsonl`` records grouped by kind:
    ``{"train": [...], "val": [...], "note": [...]}``.

    Training a config again from scratch appends to the same file, so the records are cut
    where the iteration count goes back, and only the last run is kept (a resumed run
    continues the count and stays whole).
    """
    path = Path(logdir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {logdir}: has this run been trained?")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip()]
    start = 0
    for i in range(1, len(records)):
        if records[i].get("iteration", 0) < records[i - 1].get("iteration", 0):
            start = i
    out: dict[str, list[dict]] = {"train": [], "val": [], "note": []}
    for record in records[start:]:
        out.setdefault(record.get("kind", "train"), []).append(record)
    return out


def _series(records: Sequence[Mapping], key: str):
    pts = [(r["iteration"], r[key]) for r in records if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _val_panel(ax, metrics, bicubic_psnr):
    ax.plot(*_series(metrics["val"], "psnr_y"), "o-", label="model")
    if bicubic_psnr is not None:
        ax.axhline(bicubic_psnr, color="gray", ls="--", label=f"bicubic {bicubic_psnr:.2f} dB")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation Y-PSNR (dB)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def plot_training_curves(metrics: Mapping, bicubic_psnr: Optional[float] = None, title: str = ""):
    """Training loss (log scale) and validation Y-PSNR against iterations."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_loss.plot(*_series(metrics["train"], "loss"))
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3, which="both")
    _val_panel(ax_val, metrics, bicubic_psnr)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gan_curves(metrics: Mapping, bicubic_psnr: Optional[float] = None):
    """GAN training: D(real) and D(fake), each loss term (unweighted), validation Y-PSNR."""
    fig, (ax_d, ax_terms, ax_val) = plt.subplots(1, 3, figsize=(13, 3.4))
    for key, label in (("d_real", "D(real HR)"), ("d_fake", "D(SR)")):
        ax_d.plot(*_series(metrics["train"], key), label=label)
    ax_d.axhline(0.5, color="gray", ls=":", lw=1)
    ax_d.set_ylim(0, 1)
    ax_d.set_xlabel("iteration")
    ax_d.set_ylabel("mean probability of 'real'")
    ax_d.legend()
    ax_d.grid(alpha=0.3)
    terms = [k for k in (metrics["train"][0] if metrics["train"] else {}) if k not in _META_KEYS]
    for key in terms:
        ax_terms.plot(*_series(metrics["train"], key), label=key)
    ax_terms.set_yscale("log")
    ax_terms.set_xlabel("iteration")
    ax_terms.set_ylabel("loss term (unweighted)")
    ax_terms.legend()
    ax_terms.grid(alpha=0.3, which="both")
    _val_panel(ax_val, metrics, bicubic_psnr)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- images

def _show(ax, img, title: str = ""):
    img = np.asarray(img)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def detail_box(img: np.ndarray, size: int = 48, stride: int = 8) -> Box:
    """The ``size`` x ``size`` window with the most fine detail (gradient energy) in ``img``.

    Zooming where the image has texture and edges is where SR methods differ most.
    """
    g = np.asarray(img, dtype=np.float64)
    g = g.mean(axis=2) if g.ndim == 3 else g
    size = min(size, *g.shape[:2])
    energy = np.zeros_like(g)
    energy[:, 1:] += np.diff(g, axis=1) ** 2
    energy[1:, :] += np.diff(g, axis=0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, box = -1.0, (0, 0, size, size)
    for top in range(0, g.shape[0] - size + 1, stride):
        for left in range(0, g.shape[1] - size + 1, stride):
            e = (integral[top + size, left + size] - integral[top, left + size]
                 - integral[top + size, left] + integral[top, left])
            if e > best:
                best, box = e, (top, left, size, size)
    return box


def comparison_grid(columns: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str],
                    boxes: Optional[Mapping[str, Box]] = None,
                    captions: Optional[Mapping[str, Mapping[str, str]]] = None,
                    panel: float = 3.0):
    """Rows = images, columns = methods; each panel shows the image with a zoom inset.

    ``columns``: ``{method: {image name: uint8 image}}`` (same sizes within a row);
    ``boxes``: ``{image name: (top, left, h, w)}`` to zoom (default: :func:`detail_box` of
    the last column, usually HR); ``captions``: ``{method: {image name: text}}`` under each title.
    """
    labels = list(columns)
    fig, axes = plt.subplots(len(names), len(labels), figsize=(panel * len(labels),
                                                               panel * len(names)), squeeze=False)
    for r, name in enumerate(names):
        box = (boxes or {}).get(name) or detail_box(columns[labels[-1]][name])
        top, left, h, w = box
        for c, label in enumerate(labels):
            ax = axes[r, c]
            img = columns[label][name]
            caption = (captions or {}).get(label, {}).get(name)
            _show(ax, img, label + (f"\n{caption}" if caption else "") if r == 0 or caption
                  else "")
            inset = ax.inset_axes([0.54, 0.0, 0.46, 0.46])
            _show(inset, img)
            inset.set_xlim(left - 0.5, left + w - 0.5)
            inset.set_ylim(top + h - 0.5, top - 0.5)
            for spine in inset.spines.values():
                spine.set_edgecolor("yellow")
                spine.set_linewidth(1.5)
            ax.indicate_inset_zoom(inset, edgecolor="yellow", alpha=0.9)
        axes[r, 0].set_ylabel(name)
    fig.tight_layout()
    return fig


def benchmark_grid(bench_set: Mapping, methods: Sequence[str], names: Sequence[str],
                   panel: float = 3.0):
    """:func:`comparison_grid` of an :func:`srlib.analysis.benchmark` set, PSNR/SSIM (Y) under
    each title. Zoom boxes: the most detailed window of each HR image."""
    columns = {m: bench_set[m]["images"] for m in methods}
    captions = {m: {r["name"]: f"{r['psnr_y']:.2f} dB / {r['ssim_y']:.3f}"
                    for r in bench_set[m]["rows"]} for m in methods if "rows" in bench_set[m]}
    hr = bench_set["HR"]["images"]
    size = {n: max(32, min(hr[n].shape[:2]) // 5) for n in names}
    boxes = {n: detail_box(hr[n], size[n]) for n in names}
    return comparison_grid(columns, names, boxes, captions, panel)


def image_row(images: Mapping[str, np.ndarray], box: Optional[Box] = None, panel: float = 3.0):
    """Images side by side with their titles; with ``box``, only that crop (pixels enlarged)."""
    fig, axes = plt.subplots(1, len(images), figsize=(panel * len(images), panel), squeeze=False)
    for ax, (title, img) in zip(axes[0], images.items()):
        img = np.asarray(img)
        if box is not None:
            top, left, h, w = box
            img = img[top:top + h, left:left + w]
        _show(ax, img, title)
    fig.tight_layout()
    return fig


def clamp_figure(hr: np.ndarray, raw: torch.Tensor, size: int = 64, panel: float = 3.0):
    """HR, the raw SR output clamped then converted, and converted without a clamp (wrapping),
    zoomed where the two conversions differ most."""
    from srlib.analysis import wrap_to_uint8
    from srlib.inference import to_uint8_image
    clamped, wrapped = to_uint8_image(raw), wrap_to_uint8(raw)
    box = detail_box(np.abs(wrapped.astype(np.int16) - clamped), size)
    return image_row({"HR": hr, "clamp, then uint8 (right)": clamped,
                      "uint8 without clamp (wraps)": wrapped}, box=box, panel=panel)


def difference_figure(images: Mapping[str, np.ndarray], reference: str, gain: float = 10.0,
                      panel: float = 3.0):
    """The reference image, then ``gain`` x |image - reference| for every other image."""
    ref = np.asarray(images[reference]).astype(np.float64)
    shown = {reference: images[reference]}
    for label, img in images.items():
        if label != reference:
            diff = np.abs(np.asarray(img).astype(np.float64) - ref) * gain
            diff = diff.max(axis=2) if diff.ndim == 3 else diff
            shown[f"|{label} - {reference}| x{gain:g}"] = np.clip(diff, 0, 255).astype(np.uint8)
    return image_row(shown, panel=panel)


def patch_grid(pairs: Sequence[tuple[np.ndarray, np.ndarray]], panel: float = 1.8):
    """Training pairs: LR patches (top row, shown at HR size) above their HR patches."""
    fig, axes = plt.subplots(2, len(pairs), figsize=(panel * len(pairs), 2 * panel + 0.3),
                             squeeze=False)
    for c, (lr, hr) in enumerate(pairs):
        _show(axes[0, c], lr, f"LR {lr.shape[1]}x{lr.shape[0]}")
        _show(axes[1, c], hr, f"HR {hr.shape[1]}x{hr.shape[0]}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sub-pixel convolution

def pixel_shuffle_figure(factor: int = 2, size: int = 3):
    """What ``nn.PixelShuffle(r)`` does, drawn from a real tensor.

    The input has r^2 channels of ``size`` x ``size``; every value is labelled by its channel
    (a letter, one colour each) and position. The output is one channel of r*size x r*size:
    each r x r block gathers the same position from all r^2 channels.
    """
    channels = factor * factor
    position = torch.arange(size * size).view(size, size)
    x = torch.stack([c * 100 + position for c in range(channels)])[None].float()
    y = torch.nn.PixelShuffle(factor)(x)[0, 0].long()
    colours = plt.get_cmap("tab10")(np.arange(channels))
    letters = "ABCDEFGHIJKLMNOP"

    def grid(ax, values, title):
        n = values.shape[0]
        for i in range(n):
            for j in range(n):
                v = int(values[i, j])
                ax.add_patch(Rectangle((j, n - 1 - i), 1, 1, facecolor=colours[v // 100],
                                       edgecolor="white", alpha=0.75))
                ax.text(j + 0.5, n - 0.5 - i, f"{letters[v // 100]}{v % 100 + 1}",
                        ha="center", va="center", fontsize=8)
        ax.set_xlim(0, n)
        ax.set_ylim(0, n)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(title)

    fig = plt.figure(figsize=(2.0 * channels + 4.5, 3.2))
    spec = fig.add_gridspec(1, channels + 2, width_ratios=[1] * channels + [0.45, 2.2])
    for c in range(channels):
        grid(fig.add_subplot(spec[0, c]), x[0, c].long(), f"input channel {letters[c]}")
    arrow = fig.add_subplot(spec[0, channels])
    arrow.annotate("", xy=(1, 0.5), xytext=(0, 0.5), arrowprops=dict(arrowstyle="->", lw=2))
    arrow.text(0.5, 0.6, f"PixelShuffle({factor})", ha="center", fontsize=8)
    arrow.set_axis_off()
    grid(fig.add_subplot(spec[0, channels + 1]), y,
         f"output: 1 x {factor * size} x {factor * size}")
    fig.suptitle(f"(1, {channels}, {size}, {size}) -> (1, 1, {factor * size}, {factor * size}): "
                 "channels become sub-pixel positions", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- colour and quality

def colour_shift_bars(shifts: Mapping[str, Mapping[str, float]], title: str = ""):
    """Grouped bars: mean SR - HR per channel (0-255 units) for each method."""
    labels = list(shifts)
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2.5, 3.2))
    width = 0.8 / 3
    for k, (channel, colour) in enumerate(zip("RGB", ("tab:red", "tab:green", "tab:blue"))):
        xs = np.arange(len(labels)) + (k - 1) * width
        ax.bar(xs, [shifts[m][channel] for m in labels], width, color=colour, label=channel)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("mean SR - HR (0-255)")
    ax.legend(ncol=3)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def perception_distortion_plot(rows: Sequence[Mapping]):
    """Each method as a point: Y-PSNR (distortion, x) against perception (y).

    Uses ``lpips`` when the rows have it (lower = closer to HR as people see it); otherwise the
    detail ratio of :func:`srlib.analysis.high_frequency_ratio` (1 = as much fine detail as HR),
    labelled as the stand-in it is.
    """
    use_lpips = all("lpips" in r for r in rows)
    key = "lpips" if use_lpips else "detail_ratio"
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for r in rows:
        ax.scatter(r["psnr_y"], r[key], s=40)
        ax.annotate(r["method"], (r["psnr_y"], r[key]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    if use_lpips:
        ax.set_ylabel("LPIPS (AlexNet), lower = better")
    else:
        ax.axhline(1.0, color="gray", ls="--", lw=1, label="HR has ratio 1")
        ax.legend(loc="best", fontsize=8)
        ax.set_ylabel("detail ratio: Laplacian energy SR / HR\n(stand-in, not LPIPS)")
    ax.set_xlabel("Y-PSNR (dB), higher = less distortion")
    ax.grid(alpha=0.3)
    xs = [r["psnr_y"] for r in rows]
    if xs:
        pad = max(0.3, 0.1 * (max(xs) - min(xs)))
        ax.set_xlim(min(xs) - pad, max(xs) + 3 * pad)
    fig.tight_layout()
    return fig

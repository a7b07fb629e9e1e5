"""Scoring as papers do it: the bicubic baseline, a model over a benchmark set, and tables.
The baseline is the calibration check (Set5 x4 28.42 dB, Set14 25.99 Y-PSNR in the literature;
28.418 and 25.993 here): if it is off, resizing or scoring is wrong and no model number holds."""
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from srlib.data.datasets import BenchmarkDataset, scorable_pair
from srlib.data.imresize import imresize
from srlib.data.io import gray_from_rgb, list_images, to_uint8
from srlib.inference import upscale
from srlib.metrics import METRICS, score_pair


def bicubic_baseline(hr_folder, scale: int = 4, max_images: int | None = None,
                     keep: dict | None = None) -> list[dict]:
    """A row of scores per image (border = scale) of bicubic upscaling of its LR, for the first
    ``max_images`` in file order (as validation takes them); ``keep``: each uint8 image by name."""
    rows = []
    for path in list_images(hr_folder)[:max_images]:
        hr, lr = scorable_pair(path, scale)
        sr = imresize(lr, float(scale))
        rows.append({"name": Path(path).stem, **score_pair(sr, hr, scale)})
        if keep is not None:
            keep[Path(path).stem] = sr
    return rows


def score_model(model: torch.nn.Module, dataset: BenchmarkDataset,
                max_images: int | None = None, keep: dict | None = None) -> list[dict]:
    """Scores per image of ``model`` on a benchmark set (border = scale, fp32), SR into ``keep``."""
    was_training = model.training
    model.eval()
    try:
        rows = []
        for item in dataset.items[:max_images]:
            sr = to_uint8(upscale(model, item["lr"]))
            sr = gray_from_rgb(sr) if item["gray"] else sr
            rows.append({"name": item["name"], **score_pair(sr, item["hr_uint8"], dataset.scale)})
            if keep is not None:
                keep[item["name"]] = sr
        return rows
    finally:
        model.train(was_training)


def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)  # inf: "inf"


def format_table(rows: Sequence[Mapping], columns: Sequence[str] = ("name", *METRICS),
                 digits: Mapping | None = None, title: str = "") -> str:
    """A plain-text table of dicts, ``-`` for a missing value; ``digits``: decimals per column."""
    places = {c: (digits or {}).get(c, 4 if c.startswith("ssim") else 2) for c in columns}
    cells = [[_cell(r.get(c), places[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    header = line(list(columns))
    return "\n".join(([title] if title else []) + [header, "-" * len(header)]
                     + [line(c) for c in cells])

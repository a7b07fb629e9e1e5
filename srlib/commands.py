"""What each ``srlib`` command does, once ``srlib.cli`` has parsed its arguments. A mistake a
person can fix (a config key, a file, a full disk) ends as one line on stderr and exit code 2;
SIGINT and SIGTERM end a training run with ``last.pt`` saved and exit 130 or 143."""
import csv
import io
import json
import math
import os
import sys
from pathlib import Path

from srlib import build, config
from srlib.checkpoint import CheckpointError
from srlib.data.download import DownloadError
from srlib.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, write_text_atomic
from srlib.data.prepare import prepare_dataset
from srlib.distributed import pick_device
from srlib.evaluate import bicubic_baseline, format_table, score_model
from srlib.export import export
from srlib.inference import load_generator, upscale_file
from srlib.logbook import TrainingDiverged, describe
from srlib.metrics import METRICS, summarize
from srlib.pretrained import PretrainedWeightsUnavailable
from srlib.train import train

USER_ERRORS = (config.ConfigError, ImageReadError, DownloadError, PretrainedWeightsUnavailable,
               TrainingDiverged, CheckpointError)


def _train(args) -> None:
    overrides = list(args.set or [])
    if args.resume:
        overrides.append(f"checkpoint={Path(args.resume).resolve()}")
    cfg = config.load(args.config, overrides)
    try:
        build.check(cfg)  # names too, before anything is built, with the file named
    except config.ConfigError as err:
        raise config.ConfigError(f"{args.config}: {err}") from None
    summary = train(cfg, progress=not args.no_progress, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, say it once
        print(describe(summary, cfg.validation.name if cfg.validation else "validation"))


def _eval(args) -> None:
    if not (args.bicubic or args.checkpoint):
        raise config.ConfigError("srlib eval needs --bicubic and/or --checkpoint")
    model = load_generator(args.checkpoint, pick_device(args.device)) if args.checkpoint else None
    results = {}  # set -> method -> rows
    for folder in args.data:
        tables = results.setdefault(Path(folder).name, {})
        if args.bicubic:
            tables[f"bicubic x{args.scale}"] = bicubic_baseline(folder, args.scale)
        if model is not None:
            dataset = build.eval_dataset(folder, model.scale)
            tables[Path(args.checkpoint).name] = score_model(model, dataset)
    text = _format(results, args.format)
    if args.output:
        write_text_atomic(args.output, text)
    else:
        print(text, end="")
    if model is not None:
        _record_scores(Path(args.checkpoint), results)


def _format(results: dict, fmt: str) -> str:
    """The eval results as a text table, CSV or JSON (4 decimals in both)."""
    if fmt == "table":
        return "".join(format_table(rows + [summarize(rows)], title=f"{name}: {method}") + "\n\n"
                       for name, tables in results.items() for method, rows in tables.items())
    if fmt == "json":
        data = {name: {method: {"rows": rows, "mean": summarize(rows)}
                       for method, rows in tables.items()} for name, tables in results.items()}
        return json.dumps(_round(data), indent=1) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["set", "method", "image", *METRICS])
    writer.writerows([name, method, row["name"], *(f"{row[k]:.4f}" for k in METRICS)]
                     for name, tables in results.items() for method, rows in tables.items()
                     for row in rows + [summarize(rows)])
    return out.getvalue()


def _round(value):
    """Floats to 4 decimals; an infinite PSNR (identical images) is null: JSON has no inf."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return [_round(v) for v in value] if isinstance(value, list) else value


def _record_scores(ckpt: Path, results: dict) -> None:
    """A checkpoint's test-set means into its run folder's ``scores.json``, for its model card."""
    if not (ckpt.parent / "srlib.lock").exists():
        return
    path = ckpt.parent / "scores.json"
    try:
        scores = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        for name, tables in results.items():
            mean = summarize(tables[ckpt.name])
            scores.setdefault(ckpt.name, {})[name] = {k: mean[k] for k in METRICS}
        write_text_atomic(path, json.dumps(scores, indent=1) + "\n")
    except (OSError, ValueError) as err:
        print(f"note: the scores were not recorded in {path} ({err})", file=sys.stderr)


def _upscale_pairs(src: Path, dst: Path, scale: int) -> tuple[list, list[str]]:
    """(input, output) pairs for a file or a folder, and the files skipped, with why; refused
    before any compute when an output would replace an input or another, or is no image type."""
    pairs, skipped = [(src, dst)], []
    if src.is_dir():
        inputs = list_images(src)
        skipped = [f"{p.name} (not one of {', '.join(IMAGE_EXTENSIONS)})"
                   for p in sorted(src.iterdir())
                   if p.is_file() and not p.name.startswith(".") and p not in inputs]
        stems = [p.stem for p in inputs]  # a.jpg and a.png must not both write a_x4.png
        pairs = [(p, dst / (f"{p.stem}_x{scale}.png" if stems.count(p.stem) == 1
                            else f"{p.stem}_{p.suffix[1:]}_x{scale}.png")) for p in inputs]
    sources = {p.resolve() for p, _ in pairs}
    for _, out in pairs:
        if out.resolve() in sources:
            raise config.ConfigError(f"output {out} would overwrite an input; choose another")
        if out.suffix.lower() not in IMAGE_EXTENSIONS:
            raise config.ConfigError(f"output {out}: unknown image type "
                                     f"{out.suffix or '(none)'}; use one of {IMAGE_EXTENSIONS}")
        if out.is_dir():
            raise config.ConfigError(f"output {out} is a folder; name the image file to write")
    return pairs, skipped


def _upscale(args) -> None:
    if 2 * args.overlap >= args.tile:
        raise config.ConfigError(f"--overlap {args.overlap} must be less than half of --tile "
                                 f"{args.tile}")
    model = load_generator(args.checkpoint, pick_device(args.device))
    pairs, skipped = _upscale_pairs(Path(args.input), Path(args.output), model.scale)
    for inp, out in pairs:
        (w, h), notes = upscale_file(model, inp, out, args.tile, args.overlap, args.precision)
        print(f"{inp} -> {out} ({w}x{h})" + "".join(f"; {n}" for n in notes))
    if skipped:
        print(f"skipped {len(skipped)} file(s): {'; '.join(skipped)}")


def _export(args) -> None:
    weights, card = export(args.checkpoint, args.output, overwrite=args.overwrite)
    print(f"{args.checkpoint} -> {weights} (generator weights and the model that holds them), "
          f"{card} (its model card)")


def _prepare(args) -> None:
    out = prepare_dataset(args.name, root=args.root, workers=args.workers, mirror=args.mirror)
    print(f"prepared {args.name}: {out}")


COMMANDS = {"train": _train, "eval": _eval, "upscale": _upscale, "export": _export,
            "prepare": _prepare}


def run(args) -> int:
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt as err:  # a training run saved last.pt first (train.Interrupted)
        print(str(err) or "interrupted", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, no permission, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    return 0

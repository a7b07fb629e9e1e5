"""``srlib train | eval | upscale | prepare``: the command line over the library.

Errors a person can fix (bad config, missing file, offline download) end with one line on
stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _train(args) -> None:
    from srlib import config as config_mod
    from srlib.train import describe, train
    overrides = list(args.set or [])
    if args.resume:
        overrides.append(f"checkpoint={Path(args.resume).resolve()}")
    cfg = config_mod.load(args.config, overrides)
    summary = train(cfg, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, say it once
        name = cfg.validation.name if cfg.validation else "validation"
        print(describe(summary, name))


def _eval(args) -> None:
    from srlib.evaluate import bicubic_baseline, format_table
    for folder in args.data:
        title = Path(folder).name
        if args.bicubic:
            rows = bicubic_baseline(folder, scale=args.scale)
            print(format_table(rows, f"{title}: bicubic x{args.scale}"))
        if args.checkpoint:
            import torch

            from srlib import registry
            from srlib.inference import load_generator
            from srlib.solvers.validate import score_model
            device = "cuda" if torch.cuda.is_available() else "cpu"
            model = load_generator(args.checkpoint, device=device)
            dataset = registry.build_eval_dataset("folder", folder, scale=model.scale)
            rows = score_model(model, dataset, device, border=model.scale, scale=model.scale)
            print(format_table(rows, f"{title}: {Path(args.checkpoint).name}"))
        print()


def _upscale(args) -> None:
    from srlib.data.io import list_images, load_image, save_image
    from srlib.inference import load_generator, upscale_image
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_generator(args.checkpoint, device=device)
    src, dst = Path(args.input), Path(args.output)
    pairs = ([(p, dst / (p.stem + ".png")) for p in map(Path, list_images(src))]
             if src.is_dir() else [(src, dst)])
    for inp, out in pairs:
        sr = upscale_image(model, load_image(inp), scale=model.scale, tile=args.tile,
                           overlap=args.overlap, precision=args.precision)
        save_image(out, sr)
        print(f"{inp} -> {out} ({sr.shape[1]}x{sr.shape[0]})")


def _prepare(args) -> None:
    from srlib.data.prepare import prepare_dataset
    out = prepare_dataset(args.name, root=args.root, workers=args.workers)
    print(f"prepared {args.name}: {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train from a JSON config")
    p.add_argument("--config", required=True, help="path to a JSON config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set iterations=200 --set optimizer.params.lr=5e-4")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (last.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="PSNR/SSIM (Y and RGB) on folders of HR images")
    p.add_argument("--data", action="append", required=True, help="folder of HR images (repeatable)")
    p.add_argument("--bicubic", action="store_true", help="score the bicubic baseline")
    p.add_argument("--checkpoint", help="score a trained generator")
    p.add_argument("--scale", type=int, default=4)
    p.set_defaults(run=_eval)

    p = sub.add_parser("upscale", help="upscale an image (or a folder) with a trained generator")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--tile", type=int, default=256, help="LR tile size (bounded memory)")
    p.add_argument("--overlap", type=int, default=32, help="LR pixels shared by neighbouring tiles")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                   help="auto: fp16 on a GPU, fp32 on the CPU")
    p.set_defaults(run=_upscale)

    p = sub.add_parser("prepare", help="download and cut DIV2K / DF2K into sub-images")
    p.add_argument("name", choices=["div2k", "df2k"])
    p.add_argument("--root", default="data")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(run=_prepare)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval" and not (args.bicubic or args.checkpoint):
        print("error: srlib eval needs --bicubic and/or --checkpoint", file=sys.stderr)
        return 2
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - turn known user errors into one line
        if _is_user_error(err):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


def _is_user_error(err: Exception) -> bool:
    from srlib.config import ConfigError
    from srlib.solvers.base import TrainingDiverged
    known = (ConfigError, FileNotFoundError, TrainingDiverged)
    names = {"ImageReadError", "DownloadError", "ChecksumError", "PretrainedWeightsUnavailable"}
    return isinstance(err, known) or type(err).__name__ in names

"""``srlib train | eval | upscale | export | prepare``: the command line over the library.
Errors a person can fix end with one line on stderr and exit code 2, never a traceback."""
import argparse
import os
import sys
from pathlib import Path

from srlib import __version__, build, config
from srlib.checkpoint import CheckpointError, export
from srlib.data.download import DownloadError
from srlib.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, load_image, save_image
from srlib.data.prepare import prepare_dataset
from srlib.distributed import pick_device
from srlib.evaluate import bicubic_baseline, format_table, score_model
from srlib.inference import load_generator, upscale_image
from srlib.losses import PretrainedWeightsUnavailable
from srlib.metrics import summarize
from srlib.train import TrainingDiverged, describe, train

USER_ERRORS = (config.ConfigError, FileNotFoundError, ImageReadError, DownloadError,
               PretrainedWeightsUnavailable, TrainingDiverged, CheckpointError)


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
    for folder in args.data:
        tables = []
        if args.bicubic:
            tables.append((f"bicubic x{args.scale}", bicubic_baseline(folder, args.scale)))
        if model is not None:
            rows = score_model(model, build.eval_dataset("folder", folder, model.scale))
            tables.append((Path(args.checkpoint).name, rows))
        for what, rows in tables:
            print(format_table(rows + [summarize(rows)], title=f"{Path(folder).name}: {what}"))
        print()


def _upscale_pairs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input, output) for a file or a folder; refused, before any compute, when an output
    would replace an input or another output, or has no image format."""
    pairs = [(src, dst)]
    if src.is_dir():
        inputs = list_images(src)
        stems = [p.stem for p in inputs]  # a.jpg and a.png must not both write a_x4.png
        pairs = [(p, dst / (f"{p.stem}_x4.png" if stems.count(p.stem) == 1
                            else f"{p.stem}_{p.suffix[1:]}_x4.png")) for p in inputs]
    sources = {p.resolve() for p, _ in pairs}
    for _, out in pairs:
        if out.resolve() in sources:
            raise config.ConfigError(f"output {out} would overwrite an input; choose another")
        if out.suffix.lower() not in IMAGE_EXTENSIONS:
            raise config.ConfigError(f"output {out}: unknown image type "
                                     f"{out.suffix or '(none)'}; use one of {IMAGE_EXTENSIONS}")
    return pairs


def _upscale(args) -> None:
    if 2 * args.overlap >= args.tile:
        raise config.ConfigError(f"--overlap {args.overlap} must be less than half of --tile "
                                 f"{args.tile}")
    pairs = _upscale_pairs(Path(args.input), Path(args.output))
    model = load_generator(args.checkpoint, pick_device(args.device))
    for inp, out in pairs:
        sr = upscale_image(model, load_image(inp), scale=model.scale, tile=args.tile,
                           overlap=args.overlap, precision=args.precision)
        save_image(out, sr)
        print(f"{inp} -> {out} ({sr.shape[1]}x{sr.shape[0]})")


def _export(args) -> None:
    out = export(args.checkpoint, args.output)
    print(f"{args.checkpoint} -> {out} (generator weights and the model that holds them)")


def _prepare(args) -> None:
    out = prepare_dataset(args.name, root=args.root, workers=args.workers, mirror=args.mirror)
    print(f"prepared {args.name}: {out}")


def _at_least(low: int):
    """An argparse type: an integer >= ``low``, else one line saying so."""
    def parse(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return int(text)
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srlib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"srlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    device = {"choices": ["auto", "cpu", "cuda"], "default": "auto",
              "help": "where to run the model (auto: the GPU when there is one)"}

    p = sub.add_parser("train", help="train from a JSON config")
    p.add_argument("--config", required=True, help="path to a JSON config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.params.lr=5e-4 (repeatable)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (last.pt)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run in the logdir (by default an unfinished one is resumed "
                        "and a finished one is kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="PSNR/SSIM (Y and RGB) on folders of HR images")
    p.add_argument("--data", action="append", required=True,
                   help="folder of HR images (repeatable)")
    p.add_argument("--bicubic", action="store_true", help="score the bicubic baseline")
    p.add_argument("--checkpoint",
                   help="score a trained generator (.pt, exported .safetensors, BasicSR .pth)")
    p.add_argument("--scale", type=_at_least(2), default=4, help="bicubic scale factor")
    p.add_argument("--device", **device)
    p.set_defaults(run=_eval)

    p = sub.add_parser("upscale", help="upscale an image (or a folder) with a trained generator")
    p.add_argument("--checkpoint", required=True,
                   help="a trained generator: best.pt/last.pt, exported .safetensors, BasicSR .pth")
    p.add_argument("input", help="an image, or a folder of images")
    p.add_argument("output", help="the output image, or a folder for a folder input")
    p.add_argument("--tile", type=_at_least(1), default=256, help="LR tile size (bounded memory)")
    p.add_argument("--overlap", type=_at_least(0), default=32,
                   help="LR pixels shared by neighbouring tiles")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                   help="auto: fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--device", **device)
    p.set_defaults(run=_upscale)

    p = sub.add_parser("export", help="write a trained generator as safetensors")
    p.add_argument("checkpoint", help="an srlib checkpoint (best.pt, last.pt; EMA weights win)")
    p.add_argument("output", help="the .safetensors file to write")
    p.set_defaults(run=_export)

    p = sub.add_parser("prepare", help="download and cut DIV2K / DF2K into sub-images")
    p.add_argument("name", choices=["div2k", "df2k"], help="the training set")
    p.add_argument("--root", default="data", help="data folder (archives go to ROOT/downloads)")
    p.add_argument("--workers", type=_at_least(1), default=None,
                   help="processes cutting sub-images (default: one per core, at most 4)")
    p.add_argument("--mirror", metavar="URL",
                   help="fetch the archives from this base URL instead of their official hosts")
    p.set_defaults(run=_prepare)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

"""``srlib train | eval | upscale | export | prepare``: the command line over the library.
It imports nothing heavy, so ``--help`` and ``--version`` answer at once; ``srlib.commands`` (torch
and the rest) is imported once the arguments parse, and ends fixable errors in one line, exit 2."""
import argparse
import functools
import importlib

from srlib import __version__


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
    command = functools.partial(sub.add_parser,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    device = {"choices": ["auto", "cpu", "cuda"], "default": "auto",
              "help": "where to run the model (auto: the GPU when there is one)"}

    p = command("train", help="train from a JSON config")
    p.add_argument("--config", required=True, help="path to a JSON config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.params.lr=5e-4 (repeatable)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (last.pt)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in the logdir, once the new one is built (by "
                        "default an unfinished run is resumed and a finished one is kept)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar even on a terminal (status lines instead)")
    p = command("eval", help="PSNR/SSIM (Y and RGB) on folders of HR images")
    p.add_argument("--data", action="append", required=True,
                   help="folder of HR images (repeatable)")
    p.add_argument("--bicubic", action="store_true", help="score the bicubic baseline")
    p.add_argument("--checkpoint",
                   help="score a trained generator (.pt, exported .safetensors, BasicSR .pth)")
    p.add_argument("--scale", type=_at_least(2), default=4,
                   help="bicubic's scale factor (a checkpoint's comes from its model)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table for people; csv and json (4 decimals) for scripts")
    p.add_argument("--output", metavar="FILE", help="write the results there instead of stdout")
    p.add_argument("--device", **device)
    p = command("upscale", help="upscale an image (or a folder) with a trained generator")
    p.add_argument("--checkpoint", required=True,
                   help="a trained generator: best.pt/last.pt, exported .safetensors, BasicSR .pth")
    p.add_argument("input", help="an image, or a folder of images")
    p.add_argument("output", help="the output image, or a folder for a folder input")
    p.add_argument("--tile", type=_at_least(1), default=192,
                   help="LR tile size: memory is one tile's work plus the output")
    p.add_argument("--overlap", type=_at_least(0), default=32,
                   help="LR pixels shared by neighbouring tiles")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                   help="auto: fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--device", **device)
    p = command("export", help="write a trained generator as safetensors, with a model card")
    p.add_argument("checkpoint", help="an srlib checkpoint (best.pt, last.pt; EMA weights win)")
    p.add_argument("output", help="the .safetensors file to write (its card: the same name, .md)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    p = command("prepare", help="download and cut DIV2K / DF2K into sub-images")
    p.add_argument("name", choices=["div2k", "df2k"], help="the training set")
    p.add_argument("--root", default="data", help="data folder (archives go to ROOT/downloads)")
    p.add_argument("--workers", type=_at_least(1), default=None,
                   help="processes cutting sub-images (default: one per core, at most 4)")
    p.add_argument("--mirror", metavar="URL",
                   help="fetch the archives from this base URL instead of their official hosts")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before torch loads
    return importlib.import_module("srlib.commands").run(args)

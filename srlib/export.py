"""``srlib export``: a generator as safetensors that tools load without srlib (its metadata says how
to rebuild it, what goes in and out), with a model card: model, data and its terms, scores."""
import json
from pathlib import Path

from safetensors.torch import save

from srlib import __version__
from srlib.checkpoint import FORMAT, is_safetensors, load, read_generator
from srlib.config import ConfigError
from srlib.data.io import atomic_path, write_text_atomic

# What each training set's sources say of its use (srlib grants nothing beyond them).
DATA_TERMS = {
    "t91": "T91 (Yang et al. 2010), as redistributed by jiny2001/dcscn-super-resolution (an MIT "
           "repository whose licence does not cover third-party image rights); see data/README.md",
    "div2k": "DIV2K (Agustsson and Timofte 2017): its site makes it available for academic "
             "research only; the images' copyright stays with their owners",
    "df2k": "DIV2K (academic research only, per its site) and Flickr2K (images collected from "
            "Flickr by the EDSR authors, under their owners' terms)",
    "folder": "a folder of the user's own images, under whatever terms they come with",
}
CONVENTIONS = {"input": "RGB, float32 in [0, 1], shape (N, 3, H, W)",
               "output": "RGB, float in [0, 1] after clamping, shape (N, 3, scale*H, scale*W)"}


def export(source: str | Path, out: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``source``'s generator (its EMA weights if any) to ``out``, its model card beside."""
    source, out = Path(source), Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"output {out}: srlib export writes safetensors, which srlib and torch "
                          f"would not read under {out.suffix or 'no suffix'}; name it "
                          f"{out.with_suffix('.safetensors').name}")
    if out.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"output {out} is the checkpoint being exported; choose another name")
    for path in (out, out.with_suffix(".md")):
        if path.exists() and not overwrite:
            raise ConfigError(f"output {path} exists; pass --overwrite to replace it")
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    state = {} if is_safetensors(source) else load(source)
    model, weights = read_generator(state or source)
    if model is None:
        raise ConfigError(f"{source}: a bare state dict says nothing of its model")
    run = state if state.get("format") == FORMAT else {}
    ema = run.get("ema") is not None
    metadata = {"format": "pt", "srlib_version": __version__, "srlib_model": json.dumps(model),
                "ema": json.dumps(ema), "scale": str(model["scale"]),
                "iterations": str(run.get("iteration", "unknown")), **CONVENTIONS}
    with atomic_path(out) as tmp:
        tmp.write_bytes(save({k: v.contiguous() for k, v in weights.items()}, metadata=metadata))
    return out, write_text_atomic(out.with_suffix(".md"), model_card(model, run, source, out, ema))


def _scores(source: Path) -> list[str]:
    """Table rows of ``scores.json`` (written by ``srlib eval`` and notebook 4), if any."""
    try:
        scores = json.loads((source.parent / "scores.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [f"| {name} | {s['psnr_y']:.2f} | {s['ssim_y']:.4f} | {s['psnr_rgb']:.2f} |"
            for name, s in sorted(scores.get(source.name, {}).items())]


def model_card(model: dict, run: dict, source: Path, out: Path, ema: bool) -> str:
    cfg = run.get("config") or {}
    data = (cfg.get("dataset") or {}).get("name", "unknown")
    params = ", ".join(f"{k}={v}" for k, v in model["model_params"].items()) or "defaults"
    rows = _scores(source)
    lines = [
        "---", "library_name: srlib", "license: other",
        f"license_name: the terms of its training data ({data}); see below",
        "pipeline_tag: image-to-image",
        f"tags: [super-resolution, srlib, {model['model']}, x{model['scale']}]",
        f"datasets: [{data}]", "---", "", f"# {model['model']} x{model['scale']} ({out.name})", "",
        f"Exported by srlib {__version__} from `{source.name}`: {model['model']} ({params}), "
        f"{'the EMA copy of the weights' if ema else 'the trained weights'}, "
        f"{run.get('iteration', 'an unknown number of')} iterations"
        + (f" of solver `{cfg.get('solver')}` with loss {cfg.get('loss_fn')}." if cfg else "."),
        "", f"- input: {CONVENTIONS['input']}", f"- output: {CONVENTIONS['output']}",
        f"- training data: {DATA_TERMS.get(data, data)}", "", "## Scores", "",
        f"Best validation Y-PSNR on the held-aside images: {run['best_psnr']:.2f} dB."
        if run.get("best_psnr", float("-inf")) > float("-inf") else "No validation recorded.",
        "", *(["| test set | Y-PSNR (dB) | Y-SSIM | RGB-PSNR (dB) |", "|---|---|---|---|", *rows]
              if rows else ["No test-set scores in this run's folder (`srlib eval --checkpoint "
                            f"{source.name}` records them in scores.json)."]),
        "", "## Load it without srlib", "", "```python", "import json, torch",
        "from safetensors import safe_open", f'with safe_open("{out.name}", "pt") as f:',
        '    meta = json.loads(f.metadata()["srlib_model"])  # model name, scale, parameters',
        "    weights = {k: f.get_tensor(k) for k in f.keys()}",
        "# build the network that meta names (e.g. BasicSR's MSRResNet has the same keys),",
        "# then: net.load_state_dict(weights); sr = net(lr).clamp(0, 1)", "```", ""]
    return "\n".join(lines)

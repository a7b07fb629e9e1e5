"""JSON run configuration -> typed, validated dataclasses, and back; ``--set`` overrides.
Every mistake is one :class:`ConfigError` naming the file, the key and what would be valid.
The names of models, losses and the like are checked by ``srlib.build``, which owns them."""
import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from srlib.typed_json import ConfigError, build, check_choice

SOLVERS = ("std", "gan")  # the training step: pixel/perceptual losses, or a GAN with its D
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


@dataclass
class LoaderParams:
    """DataLoader settings (the original's ``dataset.params``)."""
    batch_size: int = 16
    num_workers: int = 0
    shuffle: bool = True
    pin_memory: bool = False


@dataclass
class DatasetConfig:
    root: str
    name: str = "folder"
    params: LoaderParams = field(default_factory=LoaderParams)
    cache: bool = True
    skip_corrupt: bool = False
    on_device: bool = False  # the set as uint8 on the GPU, batches cut there


@dataclass
class ValidationConfig:
    """Validation every ``every`` iterations; its Y-PSNR picks ``best.pt``."""
    root: str = "data/T91_holdout"
    name: str = "holdout"
    every: int = 500
    max_images: int | None = None


@dataclass
class OptimizerConfig:
    name: str = "adam"
    params: dict = field(default_factory=lambda: {"lr": 1e-4, "betas": [0.9, 0.99]})


@dataclass
class SchedulerConfig:
    name: str
    params: dict = field(default_factory=dict)


@dataclass
class LossTerm:
    """One weighted term of the training loss, logged on its own."""
    name: str
    weight: float = 1.0
    params: dict = field(default_factory=dict)


@dataclass
class DiscriminatorConfig:
    name: str = "srgan"
    params: dict = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = None


@dataclass
class Config:
    """One training run; the README's config table explains every key."""
    logdir: str
    model: str
    dataset: DatasetConfig
    solver: str = "std"
    model_params: dict = field(default_factory=dict)
    scale: int = 4
    epochs: int | None = None
    iterations: int | None = None
    max_minutes: float | None = None
    loss_fn: list = field(default_factory=lambda: [LossTerm("l1")])
    patch_size: int = 128
    checkpoint: str | None = None
    generator_path: str | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = None
    validation: ValidationConfig | None = field(default_factory=ValidationConfig)
    discriminator: DiscriminatorConfig | None = None
    seed: int = 0
    device: str = "auto"
    ema_decay: float | None = None
    save_every: int = 500
    log_every: int = 20
    allow_random_vgg: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool | str = False  # or a mode; "reduce-overhead" adds CUDA graphs


def _check(cfg: Config) -> None:
    """Fixed choices and ranges; names and the solver/loss pairing are ``srlib.build``'s job."""
    for key, valid in (("solver", SOLVERS), ("scale", (2, 3, 4)), ("compile", COMPILE_MODES),
                       ("device", ("auto", "cpu", "cuda")),
                       ("precision", ("fp32", "bf16", "fp16"))):
        check_choice(getattr(cfg, key), valid, key)
    if cfg.epochs is None and cfg.iterations is None and cfg.max_minutes is None:
        raise ConfigError('missing key: "epochs" or "iterations" (or "max_minutes"), to stop')
    for key, low in {"epochs": 1, "iterations": 1, "save_every": 1, "log_every": 1,
                     "patch_size": 1, "dataset.params.batch_size": 1, "validation.every": 1,
                     "dataset.params.num_workers": 0, "validation.max_images": 1}.items():
        value = lookup(cfg, key)
        if value is not None and value < low:
            raise ConfigError(f'key "{key}": must be >= {low}, got {value}')
    for key, high in (("max_minutes", None), ("ema_decay", 1), ("optimizer.params.lr", None),
                      ("discriminator.optimizer.params.lr", None)):
        value = lookup(cfg, key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and 0 < value and (high is None or value < high)):
            span = f"in (0, {high})" if high else "> 0"
            raise ConfigError(f'key "{key}": must be a number {span}, got {value!r}')
    if any(t.weight < 0 for t in cfg.loss_fn):
        raise ConfigError('key "loss_fn": every term\'s "weight" must be >= 0')
    if cfg.patch_size % cfg.scale:
        raise ConfigError(f'key "patch_size": {cfg.patch_size} is not a multiple of '
                          f'"scale" {cfg.scale} (the LR patch would not align)')
    if cfg.solver == "gan" and cfg.discriminator is None:
        cfg.discriminator = DiscriminatorConfig()
    for key in ("checkpoint", "generator_path"):
        if getattr(cfg, key) is not None and not Path(getattr(cfg, key)).is_file():
            raise ConfigError(f'key "{key}": file not found: {getattr(cfg, key)}')


def lookup(node, dotted: str):
    """The value at ``a.b.c`` (attributes or dict keys), None where a part is missing."""
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def _normalise_loss(value: Any) -> list:
    """A name or a list of names/terms -> a list of terms. The original's ``"adversarial"``
    is the SRGAN paper's loss: VGG54 after its ReLU (the paper's phi_5,4), plus 1e-3 x GAN."""
    if value == "adversarial":
        return [{"name": "perceptual", "params": {"before_activation": False}},
                {"name": "adversarial", "weight": 1e-3}]
    if isinstance(value, str):
        return [{"name": value}]
    if isinstance(value, list) and value:
        bad = next((i for i, v in enumerate(value) if not isinstance(v, (str, dict))), None)
        if bad is not None:
            raise ConfigError(f'key "loss_fn[{bad}]": expected a loss name or an object '
                              f'{{"name", "weight", "params"}}, got {json.dumps(value[bad])}')
        return [{"name": v} if isinstance(v, str) else v for v in value]
    raise ConfigError(f'key "loss_fn": expected a loss name or a non-empty list of '
                      f'{{"name", "weight", "params"}} terms, got {json.dumps(value)}')


def from_dict(data: dict, overrides: list[str] | None = None,
              base_dir: str | Path | None = None) -> Config:
    """A validated :class:`Config` from parsed JSON and ``key=value`` overrides; relative
    paths start at ``base_dir`` (default: the current directory)."""
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a JSON object, got {type(data).__name__}")
    data = json.loads(json.dumps(data))  # private deep copy
    for item in overrides or []:
        _apply_override(data, item)
    data["loss_fn"] = _normalise_loss(data.get("loss_fn", "l1"))
    config = build(Config, data, "")
    config.loss_fn = [build(LossTerm, t, f"loss_fn[{i}]") for i, t in enumerate(config.loss_fn)]
    if not config.logdir.strip():
        raise ConfigError('key "logdir": empty; name the folder for the run, e.g. runs/my-run')
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for section, key in ((config, "logdir"), (config, "checkpoint"), (config, "generator_path"),
                         (config.dataset, "root"), (config.validation, "root")):
        value = getattr(section, key, None)
        if value is not None and not Path(value).is_absolute():
            setattr(section, key, str(base / value))
    _check(config)
    return config


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:  # missing, a folder, no permission, ...
        raise ConfigError(f"config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}: "
                          f"{err.object[err.start:err.start + 1]!r}); save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: "
                          f"{err.msg}") from None
    # relative paths start at the folder holding its configs/ folder (so data/T91 means the
    # project's data wherever you run from), else at the config file's own folder
    parents = path.resolve().parents
    base_dir = next((p.parent for p in parents if p.name == "configs"), parents[0])
    try:
        return from_dict(data, overrides, base_dir)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def dumps(config: Config) -> str:
    return json.dumps(asdict(config), indent=2) + "\n"


def _apply_override(data: dict, item: str) -> None:
    """``a.b=value``: value parsed as JSON when it parses, else kept as a string."""
    if "=" not in item:
        raise ConfigError(f'override "{item}": expected key=value, e.g. iterations=100')
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:  # a bare word: the string itself
        value = raw
    *sections, last = key.strip().split(".")
    node, cls = data, Config
    for part in sections:
        if node.get(part) is None:  # a section the file leaves out starts from its default
            node[part] = _default(cls, part)
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f'override "{item}": "{part}" is not a section')
        hint = typing.get_type_hints(cls).get(part) if cls is not None else None
        cls = next((o for o in (hint, *typing.get_args(hint)) if is_dataclass(o)), None)
    node[last] = value


def _default(cls, name: str) -> dict:
    """Section ``name`` of dataclass ``cls`` as its default, so that ``--set optimizer.params.lr``
    keeps the default betas; {} for a section with no default object (then its fields' defaults)."""
    f = next((f for f in fields(cls) if f.name == name), None) if cls is not None else None
    if f is None or f.default_factory is MISSING:
        return {}
    value = f.default_factory()
    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value))

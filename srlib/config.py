"""JSON run configuration -> typed, validated dataclasses, and back.

The format is that of the PyTorch SRGAN project this repository grew from (keys ``logdir``,
``model``, ``solver``, ``epochs``, ``loss_fn``, ``patch_size``, ``checkpoint``,
``generator_path``, ``dataset``, ``optimizer``, ``scheduler``); keys were added, none renamed.
Every mistake a person can make in the file is one :class:`ConfigError` naming the file, the
key and what would be valid. This module checks types, ranges and fixed choices; the names of
models, losses, optimisers, schedulers and datasets are checked by ``srlib.build``, which owns
the tables they come from. It imports nothing from srlib.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


SOLVERS = ("std", "gan")  # the training step: pixel/perceptual losses, or a GAN with its D
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


class ConfigError(ValueError):
    """A problem in a configuration file, phrased for the person who wrote it."""


# --------------------------------------------------------------------------- sections


@dataclass
class LoaderParams:
    """DataLoader settings (the original's ``dataset.params``)."""

    batch_size: int = 16
    num_workers: int = 0
    shuffle: bool = True
    pin_memory: bool = False

    def check(self, where: str) -> None:
        _at_least(self.batch_size, 1, f"{where}.batch_size")
        _at_least(self.num_workers, 0, f"{where}.num_workers")


@dataclass
class DatasetConfig:
    """Training data. ``name``: t91 (shipped), folder (any HR folder), div2k, df2k."""

    root: str
    name: str = "folder"
    params: LoaderParams = field(default_factory=LoaderParams)
    cache: bool = True
    skip_corrupt: bool = False
    # Keep the whole set as uint8 on the training device and cut batches there (crop and
    # flips on the GPU, no loader workers): srlib.data.device_batches.
    on_device: bool = False

    def check(self, where: str) -> None:
        self.params.check(f"{where}.params")


@dataclass
class ValidationConfig:
    """Validation on a benchmark set every ``every`` iterations (Y-PSNR picks the best checkpoint)."""

    root: str = "data/Set5"
    name: str = "set5"
    every: int = 500
    max_images: int | None = None

    def check(self, where: str) -> None:
        _at_least(self.every, 1, f"{where}.every")
        if self.max_images is not None:
            _at_least(self.max_images, 1, f"{where}.max_images")


@dataclass
class OptimizerConfig:
    name: str = "adam"
    params: dict = field(default_factory=lambda: {"lr": 1e-4, "betas": [0.9, 0.99]})

    def check(self, where: str) -> None:
        lr = self.params.get("lr", 1e-3)
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
            raise ConfigError(f'key "{where}.params.lr": must be a positive number, got {lr!r}')


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

    def check(self, where: str) -> None:
        if self.weight < 0:
            raise ConfigError(f'key "{where}.weight": must be >= 0, got {self.weight}')


@dataclass
class DiscriminatorConfig:
    name: str = "srgan"
    params: dict = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = None

    def check(self, where: str) -> None:
        self.optimizer.check(f"{where}.optimizer")


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
    # torch.compile: false, true (= "default"), or a mode; "reduce-overhead" adds CUDA graphs,
    # which removes the per-kernel launch cost that limits small SR models on fast GPUs.
    compile: bool | str = False

    def check(self) -> None:
        _choice(self.solver, SOLVERS, "solver")
        _choice(self.scale, (2, 3, 4), "scale")
        _choice(self.device, ("auto", "cpu", "cuda"), "device")
        _choice(self.precision, ("fp32", "bf16", "fp16"), "precision")
        _choice(self.compile, COMPILE_MODES, "compile")
        if self.epochs is None and self.iterations is None and self.max_minutes is None:
            raise ConfigError('missing key: give "epochs" or "iterations" (or "max_minutes") '
                              "so the run knows when to stop")
        for key in ("epochs", "iterations", "save_every", "log_every", "patch_size"):
            if getattr(self, key) is not None:
                _at_least(getattr(self, key), 1, key)
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f'key "max_minutes": must be > 0, got {self.max_minutes}')
        if self.patch_size % self.scale:
            raise ConfigError(f'key "patch_size": {self.patch_size} is not a multiple of '
                              f'"scale" {self.scale} (the LR patch would not align)')
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f'key "ema_decay": must be in (0, 1), got {self.ema_decay}')
        self.dataset.check("dataset")
        self.optimizer.check("optimizer")
        if self.validation is not None:
            self.validation.check("validation")
        for i, term in enumerate(self.loss_fn):
            term.check(f"loss_fn[{i}]")
        adversarial = [t for t in self.loss_fn if t.name == "adversarial"]
        if len(adversarial) > 1:
            raise ConfigError('key "loss_fn": at most one "adversarial" term')
        if self.solver == "gan":
            if not adversarial:
                raise ConfigError('key "loss_fn": solver "gan" needs an "adversarial" term')
            if self.discriminator is None:
                self.discriminator = DiscriminatorConfig()
            self.discriminator.check("discriminator")
        elif adversarial:
            raise ConfigError('key "loss_fn": the "adversarial" term needs "solver": "gan" '
                              f'(got solver "{self.solver}")')
        for key in ("checkpoint", "generator_path"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f'key "{key}": file not found: {value}')

    @property
    def lr_patch_size(self) -> int:
        return self.patch_size // self.scale

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading

SHORTHAND_LOSSES = {
    # The original's names; "adversarial" is the SRGAN paper's loss: VGG54 content + 1e-3 GAN.
    "adversarial": [{"name": "perceptual", "weight": 1.0},
                    {"name": "adversarial", "weight": 1e-3}],
}


def _normalise_loss(value: Any) -> list:
    if isinstance(value, str):
        return SHORTHAND_LOSSES.get(value, [{"name": value}])
    if isinstance(value, list):
        return [{"name": v} if isinstance(v, str) else v for v in value]
    raise ConfigError(f'key "loss_fn": expected a loss name or a list of '
                      f'{{"name", "weight", "params"}} terms, got {type(value).__name__}')


def from_dict(data: dict, overrides: list[str] | None = None,
              base_dir: str | Path | None = None) -> Config:
    """Build and validate a :class:`Config` from parsed JSON (plus ``key=value`` overrides).

    Relative paths are resolved against ``base_dir`` (default: the current directory).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a JSON object, got {type(data).__name__}")
    data = json.loads(json.dumps(data))  # private deep copy
    for item in overrides or []:
        _apply_override(data, item)
    if "loss_fn" in data:
        data["loss_fn"] = _normalise_loss(data["loss_fn"])
    config = _build(Config, data, "")
    config.loss_fn = [_build(LossTerm, t, f"loss_fn[{i}]") if isinstance(t, dict) else t
                      for i, t in enumerate(config.loss_fn)]
    _resolve_paths(config, Path(base_dir) if base_dir is not None else Path.cwd())
    config.check()
    return config


def project_dir_of(config_path: Path) -> Path:
    """Where a config's relative paths start: the folder holding its ``configs/`` folder
    (so ``data/T91`` means the project's data wherever you run from), else its own folder."""
    config_path = config_path.resolve()
    for parent in config_path.parents:
        if parent.name == "configs":
            return parent.parent
    return config_path.parent


def _resolve_paths(config: Config, base: Path) -> None:
    absolute = lambda p: p if p is None or Path(p).is_absolute() else str(base / p)  # noqa: E731
    config.logdir = absolute(config.logdir)
    config.checkpoint = absolute(config.checkpoint)
    config.generator_path = absolute(config.generator_path)
    config.dataset.root = absolute(config.dataset.root)
    if config.validation is not None:
        config.validation.root = absolute(config.validation.root)


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a JSON config file; every error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: "
                          f"{err.msg}") from None
    try:
        return from_dict(data, overrides, base_dir=project_dir_of(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save(config: Config, logdir: str | Path | None = None) -> Path:
    """Write the resolved config as ``config.json`` in the run's folder, for the reader of a
    run (resume reads the copy inside the checkpoint, so a torn write here loses nothing)."""
    target = Path(logdir or config.logdir) / "config.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def _apply_override(data: dict, item: str) -> None:
    """``a.b=value``: value parsed as JSON when it parses, else kept as a string."""
    if "=" not in item:
        raise ConfigError(f'override "{item}": expected key=value, e.g. iterations=100')
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f'override "{item}": "{part}" is not a section')
    node[parts[-1]] = value


# --------------------------------------------------------------------------- typed building


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f'key "{where}": expected an object, got {type(data).__name__}')
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise ConfigError(f'unknown key "{_join(where, key)}"{hint}; '
                              f"valid keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f'missing required key "{_join(where, name)}"')
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str):
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        kinds = [o for o in options if o is not type(None)]
        if len(kinds) > 1:  # e.g. compile: true/false or a mode name
            for kind in kinds:
                try:
                    return _coerce(value, kind, where)
                except ConfigError:
                    pass
            names = " or ".join({bool: "true/false", str: "a string", int: "an integer",
                                 float: "a number"}.get(k, str(k)) for k in kinds)
            raise ConfigError(f'key "{where}": expected {names}, got {json.dumps(value)}')
        hint = kinds[0]
        origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    expected = origin or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f'key "{where}": expected an integer, got {value!r}')
    if not isinstance(value, expected):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                 list: "a list", dict: "an object"}
        raise ConfigError(f'key "{where}": expected {names.get(expected, expected)}, '
                          f"got {json.dumps(value)}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _choice(value: Any, valid, key: str) -> None:
    if value not in valid:
        raise ConfigError(f'key "{key}": unknown value {json.dumps(value)}; '
                          f"valid: {', '.join(v if isinstance(v, str) else json.dumps(v) for v in valid)}")


def _at_least(value: int, low: int, key: str) -> None:
    if value < low:
        raise ConfigError(f'key "{key}": must be >= {low}, got {value}')

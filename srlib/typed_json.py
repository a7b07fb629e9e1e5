"""JSON values as the types a dataclass's fields name, every mistake a :class:`ConfigError` naming
the key (``a.b[2].c``): the machinery under ``srlib.config``, which holds the keys themselves."""
import contextlib
import difflib
import json
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Union


class ConfigError(ValueError):
    """A mistake in a configuration, phrased for the person who wrote it."""


def build(cls, data: Any, where: str):
    """A ``cls`` dataclass from a JSON object, every key known and every value coerced."""
    if not isinstance(data, dict):
        raise ConfigError(f'key "{where}": expected an object, got {type(data).__name__}')
    hints, prefix = typing.get_type_hints(cls), f"{where}." if where else ""
    known = {f.name: f for f in fields(cls)}
    for key in (k for k in data if k not in known):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise ConfigError(f'unknown key "{prefix}{key}"{hint}; '
                          f"valid keys here: {', '.join(sorted(known))}")
    kwargs = {}
    for name, f in known.items():
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], prefix + name)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f'missing required key "{prefix}{name}"')
    return cls(**kwargs)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          list: "a list", dict: "an object"}


def coerce(value: Any, hint: Any, where: str):
    """``value`` as the type ``hint`` names (a dataclass, int, float, ..., ``X | None``, a union),
    or a :class:`ConfigError` naming the key ``where``. Integers must fit in 64 bits and numbers
    be finite: JSON allows neither limit, and torch needs both."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:  # X | None: X's own message
            return coerce(value, options[0], where)
        for option in options:
            with contextlib.suppress(ConfigError):
                return coerce(value, option, where)
        names = " or ".join(_NAMES.get(o, str(o)) for o in options)
        raise ConfigError(f'key "{where}": expected {names}, got {json.dumps(value)}')
    if is_dataclass(hint):
        return build(hint, value, where)
    expected = typing.get_origin(hint) or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected in (int, float) and isinstance(value, bool)):
        raise ConfigError(f'key "{where}": expected {_NAMES.get(expected, expected)}, '
                          f"got {json.dumps(value)}")
    if expected is int and not -2**63 <= value < 2**63:
        raise ConfigError(f'key "{where}": {value} is out of range for an integer (64 bits)')
    if expected is float and not math.isfinite(value):
        raise ConfigError(f'key "{where}": expected a finite number, got {value}')
    return value


def check_choice(value: Any, valid, key: str) -> None:
    if value not in valid:
        names = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in valid)
        raise ConfigError(f'key "{key}": unknown value {json.dumps(value)}; valid: {names}')

"""Weighted sum of content losses, plus the config-spec builder.

Content terms (pixel, perceptual) compare SR with HR and are summed here.
Adversarial terms need the discriminator and its own optimisation step, so
the GAN solver owns them; :func:`split_adversarial` hands them over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .perceptual import PerceptualLoss
from .pixel import PixelLoss

ADVERSARIAL_NAMES = ("adversarial", "gan")
CONTENT_NAMES = ("l1", "mse", "perceptual")


def _unique_names(names: Iterable[str]) -> list[str]:
    """Suffix repeated names (l1, l1_2, l1_3) so every logged value stays distinct."""
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name}_{n}"
        out.append(candidate)
    return out


class CombinedLoss(nn.Module):
    """``total = sum(weight * term(sr, hr))``, also reporting every unweighted term.

    forward returns ``(total, {name: float})``; the dict holds detached
    Python floats, ready for logging, while ``total`` keeps the graph.
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedLoss needs at least one (name, weight, module) term")
        names = _unique_names(name for name, _, _ in terms)
        self.weights = {name: float(weight) for name, (_, weight, _) in zip(names, terms)}
        self.terms = nn.ModuleDict({name: module for name, (_, _, module) in zip(names, terms)})

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = sr.new_zeros(())
        values: dict[str, float] = {}
        for name, module in self.terms.items():
            value = module(sr, hr)
            total = total + self.weights[name] * value
            values[name] = value.detach().item()
        return total, values

    def extra_repr(self) -> str:
        return ", ".join(f"{name}*{weight:g}" for name, weight in self.weights.items())


def split_adversarial(spec: Sequence[Mapping[str, Any]]) -> tuple[list[dict], dict | None]:
    """Separate content terms from the (at most one) adversarial term of a loss spec.

    The adversarial entry is returned as given, e.g.
    ``{"name": "adversarial", "weight": 1e-3, "params": {"kind": "vanilla"}}``.
    """
    content: list[dict] = []
    adversarial: list[dict] = []
    for entry in spec:
        (adversarial if entry.get("name") in ADVERSARIAL_NAMES else content).append(dict(entry))
    if len(adversarial) > 1:
        raise ValueError(f"at most one adversarial term is allowed, got {len(adversarial)}")
    return content, (adversarial[0] if adversarial else None)


def _build_term(name: str, params: Mapping[str, Any], allow_random_vgg: bool) -> nn.Module:
    params = dict(params)
    if name in ("l1", "mse"):
        if params:
            raise ValueError(f"pixel loss {name!r} takes no params, got {sorted(params)}")
        return PixelLoss(name)
    if name == "perceptual":
        # Config files say `allow_random_vgg`; the class says allow_random_weights.
        if "allow_random_vgg" in params:
            params["allow_random_weights"] = params.pop("allow_random_vgg")
        params.setdefault("allow_random_weights", allow_random_vgg)
        if "input_range" in params:
            params["input_range"] = tuple(params["input_range"])
        return PerceptualLoss(**params)
    if name in ADVERSARIAL_NAMES:
        raise ValueError(f"{name!r} is adversarial: remove it with split_adversarial() first")
    raise ValueError(f"unknown content loss {name!r}; valid names: {list(CONTENT_NAMES)}")


def build_content_loss(spec: Sequence[Mapping[str, Any]], allow_random_vgg: bool = False) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from ``[{"name", "weight", "params"}, ...]``.

    ``weight`` defaults to 1 and ``params`` to {}; ``perceptual`` params go to
    :class:`PerceptualLoss`. ``allow_random_vgg`` is the default for every
    perceptual term that does not set it itself.
    """
    terms = []
    for entry in spec:
        unknown = set(entry) - {"name", "weight", "params"}
        if unknown or "name" not in entry:
            raise ValueError(f"loss entry needs 'name' and may have 'weight', 'params'; got {dict(entry)}")
        module = _build_term(entry["name"], entry.get("params") or {}, allow_random_vgg)
        terms.append((entry["name"], float(entry.get("weight", 1.0)), module))
    return CombinedLoss(terms)

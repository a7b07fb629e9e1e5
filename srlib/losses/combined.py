"""Weighted sum of content losses, each term logged on its own.

Content terms (pixel, perceptual) compare SR with HR and are summed here. Adversarial terms
need the discriminator and its own optimisation step, so the GAN solver owns them. The
config's terms are turned into modules through ``srlib.registry`` (``solvers/loss_terms.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


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

    forward returns ``(total, {name: tensor})``; the dict holds detached 0-dim tensors for
    logging, while ``total`` keeps the graph. They stay tensors so that a GPU step never
    waits for the host: the solver reads them back once per logging window.
    """

    def __init__(self, terms: Sequence[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedLoss needs at least one (name, weight, module) term")
        names = _unique_names(name for name, _, _ in terms)
        self.weights = {name: float(weight) for name, (_, weight, _) in zip(names, terms)}
        self.terms = nn.ModuleDict({name: module for name, (_, _, module) in zip(names, terms)})

    def forward(self, sr: torch.Tensor,
                hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = sr.new_zeros(())
        values: dict[str, torch.Tensor] = {}
        for name, module in self.terms.items():
            value = module(sr, hr)
            total = total + self.weights[name] * value
            values[name] = value.detach()
        return total, values

    def extra_repr(self) -> str:
        return ", ".join(f"{name}*{weight:g}" for name, weight in self.weights.items())

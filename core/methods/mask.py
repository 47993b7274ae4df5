"""MaskMethod: the common part of the mask methods (unstructured, nm, block).

A mask zeroes weights inside dense tensors (torch.nn.utils.prune's weight_mask): the network keeps its
shape, size and dense speed. Every round folds earlier masks in and scores the weights again, earlier
zeros lowest, so pruning only grows.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.graph import Unit, unstructured_units
from core.importance import REGISTRY as CRITERIA
from core.importance import Calibration, weight_scores
from core.methods.base import Method
from core.protocols import ConfigLike, CostLike, PatternLike
from core.prune.unstructured import make_permanent
from core.spec import ModelSpec


class MaskMethod(Method):
    """A method that masks single weights or patterns of them in every Conv2d/Linear layer."""

    mask: ClassVar[bool] = True
    unit: ClassVar[str] = "weights"

    def criteria(self) -> tuple[str, ...]:
        """Masks need one score per weight: the criteria that have a per-weight version."""
        return tuple(c for c, crit in CRITERIA.items() if crit.weights is not None)

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return unstructured_units(model)

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str]) -> dict[str, int]:
        """Fold earlier masks in, score the weights, keep earlier zeros lowest (pruning only grows), mask."""
        make_permanent(model)
        scores = weight_scores(model, config.criterion, calib, config.seed)
        modules = dict(model.named_modules())
        scores = {n: torch.where(modules[n].weight.detach() == 0, torch.full_like(s, -torch.inf), s)
                  for n, s in scores.items()}
        return self.mask_layers(model, {u: r for u, r in ratios.items() if r > 0}, scores, config.pattern)

    def mask_layers(self, model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor],
                    pattern: PatternLike) -> dict[str, int]:
        """Install this method's masks at `ratios` from `scores`; returns the weights zeroed per layer."""
        raise NotImplementedError

    def scores(self, model: nn.Module, example_input: torch.Tensor, criterion: str, calib: Calibration,
               seed: int) -> dict[str, torch.Tensor]:
        """One score per weight of every Conv2d/Linear."""
        return weight_scores(model, criterion, calib, seed)

    def what_changed(self, removed: dict[str, int], blocks: tuple[str, ...]) -> str | None:
        return "Mask methods keep every width; their zeros sit inside the same tensors."

    def estimate(self, cost: CostLike, ratios: dict[str, float]) -> dict[str, int]:
        return cost.masked(ratios)

    def step_targets(self, spec: ModelSpec, config: ConfigLike, model: nn.Module, fraction: float,
                     done: list[str]) -> tuple[dict[str, float], list[str]]:
        """Masks count against all weights, so a round's ratios are the config's times the fraction."""
        return {u: r * fraction for u, r in config.ratios.items()}, []

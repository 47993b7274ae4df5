"""MaskMethod: the common part of the mask methods (unstructured, nm, block).

A mask zeroes weights inside dense tensors (torch.nn.utils.prune's weight_mask): the network keeps its
shape, size and dense speed. Every round folds earlier masks in and scores the weights again, earlier
zeros lowest, so pruning only grows.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import Unit, unstructured_units
from core.importance import REGISTRY as CRITERIA
from core.importance import Calibration, weight_scores
from core.methods.base import Method
from core.protocols import ConfigLike, CostLike, PatternLike, RepairProgress
from core.prune.unstructured import make_permanent
from core.repair_layers import REPAIRS, repair_masks
from core.spec import ModelSpec


class MaskMethod(Method):
    """A method that masks single weights or patterns of them in every Conv2d/Linear layer."""

    mask: ClassVar[bool] = True
    unit: ClassVar[str] = "weights"
    repairs: ClassVar[tuple[str, ...]] = REPAIRS

    def validate(self, config: ConfigLike) -> None:
        """Besides the common checks: SparseGPT picks its own masks (a criterion would be ignored), and a
        repair happens at a cut, which the dynamic schedule's in-training mask updates never reach."""
        super().validate(config)
        repair = config.repair
        if repair == "sparsegpt" and config.criterion != "l1":
            raise PruneLabError(f"SparseGPT chooses its own masks as it repairs (w^2 / [H^-1]_ii^2): criterion "
                                f"{config.criterion} would be ignored; repair {config.criterion}'s masks with lstsq")
        if repair != "none" and config.schedule.kind == "dynamic":
            raise PruneLabError(f"the dynamic schedule moves masks during training, where no {repair} repair runs: "
                                "use oneshot or iterative with a repair")

    def criteria(self) -> tuple[str, ...]:
        """Masks need one score per weight: the criteria that have a per-weight version."""
        return tuple(c for c, crit in CRITERIA.items() if crit.weights is not None)

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return unstructured_units(model)

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str], progress: RepairProgress | None = None) -> dict[str, int]:
        """Fold earlier masks in, score the weights, keep earlier zeros lowest (pruning only grows), mask; with a
        repair, change the weights that stay so each layer's outputs on the calibration data move least."""
        make_permanent(model)
        active = {u: r for u, r in ratios.items() if r > 0}
        repair = config.repair
        if repair == "sparsegpt":  # SparseGPT chooses its masks as it repairs
            return repair_masks(model, example_input, calib.x, "sparsegpt", active, nm=self.nm(config.pattern),
                                progress=progress)
        scores = weight_scores(model, config.criterion, calib, config.seed)
        modules = dict(model.named_modules())
        scores = {n: torch.where(modules[n].weight.detach() == 0, torch.full_like(s, -torch.inf), s)
                  for n, s in scores.items()}
        dense = {n: modules[n].weight.detach().clone() for n in active} if repair == "lstsq" else {}
        removed = self.mask_layers(model, active, scores, config.pattern)
        if repair != "lstsq":
            return removed
        keep = {n: modules[n].weight_mask.clone() for n in removed}
        make_permanent(model)  # the masks are kept; the weights go back to dense, to be repaired under them
        with torch.no_grad():
            for n in removed:
                modules[n].weight.copy_(dense[n])
        return repair_masks(model, example_input, calib.x, "lstsq", {n: active[n] for n in removed}, keep=keep,
                            progress=progress)

    def nm(self, pattern: PatternLike) -> tuple[int, int] | None:
        """(n kept, of every m) for a method that masks to an N:M pattern; None otherwise."""
        return None

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

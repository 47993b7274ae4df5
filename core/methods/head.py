"""Head pruning: remove whole attention heads (their q/k/v rows and output-projection columns), ranked
by the loss gradient of a gate on each head (taylor), weight norms or at random."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import Unit, head_units
from core.importance import Calibration
from core.importance.heads import HEAD_CRITERIA, head_scores
from core.methods.shrink import ShrinkMethod
from core.protocols import ConfigLike
from core.prune.heads import heads_to_remove, remove_heads


class Head(ShrinkMethod):
    name: ClassVar[str] = "head"
    unit: ClassVar[str] = "heads"
    unit_heading: ClassVar[str] = "attention module (share of its heads)"
    help: ClassVar[str] = "removes attention heads · smaller and faster"
    no_units: ClassVar[str] = "has no attention modules (with q/k/v/proj projections)"

    def criteria(self) -> tuple[str, ...]:
        return HEAD_CRITERIA

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return head_units(model)

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str]) -> dict[str, int]:
        scores = head_scores(model, config.criterion, calib, config.seed)
        unknown = sorted(set(ratios) - set(scores))
        if unknown:
            raise PruneLabError(f"not attention modules of this model: {', '.join(unknown)}")
        return remove_heads(model, heads_to_remove(scores, {u: r for u, r in ratios.items() if r > 0}))

"""Head pruning: remove whole attention heads (their q/k/v rows and output-projection columns), ranked
by the loss gradient of a gate on each head (taylor), weight norms or at random."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.attention import unrecognised
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
    all_label: ClassVar[str] = "All attention modules"
    width_units: ClassVar[str | None] = "head"
    suggested_criterion: ClassVar[str] = "taylor"  # gate gradients rank heads best where there is data
    transformer_follow_up: ClassVar[str] = "then remove whole layers (--method layer)"
    help: ClassVar[str] = "removes attention heads · smaller and faster"
    no_units: ClassVar[str] = "has no attention modules"

    def why_none(self, model: nn.Module, example_input: torch.Tensor) -> str:
        """Name the attention-like modules that were not recognised, and what still works."""
        odd = unrecognised(model)
        if not odd:
            return "has no attention modules"
        return (f"attention modules not recognised: {', '.join(odd[:3])}; it needs q/k/v and output projections "
                "under known names (core.attention); the channel, neuron and unstructured methods still work")

    def criteria(self) -> tuple[str, ...]:
        return HEAD_CRITERIA

    def scores(self, model: nn.Module, example_input: torch.Tensor, criterion: str, calib: Calibration,
               seed: int) -> dict[str, torch.Tensor]:
        """One score per head of every attention module."""
        return head_scores(model, criterion, calib, seed)

    def what_changed(self, removed: dict[str, int], blocks: tuple[str, ...]) -> str | None:
        heads = ", ".join(f"{m}: {n}" for m, n in removed.items())
        return (f"Heads removed per attention module — {heads or 'none'}: q/k/v outputs and the output "
                "projection's inputs shrink with them; the lower panel shows heads and head widths.")

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return head_units(model)

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str], outputs: dict[str, list[int]] | None = None) -> dict[str, int]:
        scores = head_scores(model, config.criterion, calib, config.seed)
        unknown = sorted(set(ratios) - set(scores))
        if unknown:
            raise PruneLabError(f"not attention modules of this model: {', '.join(unknown)}")
        return remove_heads(model, heads_to_remove(scores, {u: r for u, r in ratios.items() if r > 0}))

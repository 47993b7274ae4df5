"""Unstructured pruning: zero the lowest-scoring single weights of each layer (or below one global
score threshold across all layers)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.importance import weight_scores
from core.methods.base import PlanOptions
from core.methods.mask import MaskMethod
from core.protocols import PatternLike
from core.prune import calibration
from core.prune.unstructured import apply_unstructured, mask_from_scores
from core.spec import ModelSpec


class Unstructured(MaskMethod):
    name: ClassVar[str] = "unstructured"
    help: ClassVar[str] = "zeroes single weights · mask: same dense size and speed"
    swept: ClassVar[bool] = True
    solved: ClassVar[bool] = True
    global_scope: ClassVar[bool] = True
    schedules: ClassVar[tuple[str, ...]] = ("oneshot", "iterative", "dynamic")

    def plan(self, spec: ModelSpec, ratio: float | None, options: PlanOptions) -> tuple[dict[str, float],
                                                                                        tuple[str, ...]]:
        """R of every layer, or (global scope) one threshold over every weight's score."""
        ratios, _ = super().plan(spec, ratio, options)
        if options.scope == "global" and ratio is not None:
            return global_ratios(spec, ratio, options.criterion, options.calibration_samples, options.seed), ()
        return ratios, ()

    def mask_layers(self, model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor],
                    pattern: PatternLike) -> dict[str, int]:
        return apply_unstructured(model, ratios, scores)

    def dynamic_mask(self, scores: torch.Tensor, ratio: float, pattern: PatternLike) -> torch.Tensor:
        return mask_from_scores(scores, ratio)


def global_ratios(spec: ModelSpec, ratio: float, criterion: str, calibration_samples: int,
                  seed: int) -> dict[str, float]:
    """Per-layer shares below one threshold over every weight's score (the ratio-quantile), at most 0.99."""
    scores = weight_scores(spec.model, criterion, calibration(spec, calibration_samples, seed), seed)
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = round(ratio * flat.numel())
    if k == 0:
        return dict.fromkeys(scores, 0.0)
    threshold = torch.kthvalue(flat, k).values
    return {n: min(0.99, round(float((s <= threshold).float().mean()), 6)) for n, s in scores.items()}

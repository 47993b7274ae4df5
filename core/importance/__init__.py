"""Importance criteria behind one small interface and a registry (see criteria.py for the list).

    weight_scores(model, "taylor", calib)        -> {layer: weight-shaped scores}    (unstructured)
    channel_scores(model, x, "taylor", calib)    -> {unit: one score per channel}    (channel groups)
    (core.methods.heatmap: rows scaled to max 1 for the dashboard, per the method's own scores)

The shared model is never modified: scoring works on a deep copy (gradients and hooks touch it).
Higher score = more important = pruned later.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import channel_groups
from core.importance.criteria import CRITERIA, Criterion, NotApplicable
from core.importance.signals import Calibration, Signals

REGISTRY: dict[str, Criterion] = {c.name: c for c in CRITERIA}
__all__ = ["REGISTRY", "Calibration", "Criterion", "NotApplicable", "channel_scores", "get", "weight_scores"]


def get(name: str) -> Criterion:
    if name not in REGISTRY:
        raise PruneLabError(f"unknown criterion {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _working_copy(model: nn.Module) -> nn.Module:
    work = copy.deepcopy(model).eval()
    for p in work.parameters():
        p.requires_grad_(True)
        p.grad = None
    return work


def _check_data(crit: Criterion, calib: Calibration | None) -> None:
    if crit.uses_data and (calib is None or len(calib.x) == 0):
        raise PruneLabError(f"criterion {crit.name} needs calibration data (calibration_samples >= 1)")


def weight_scores(model: nn.Module, criterion: str, calib: Calibration | None = None,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-weight scores of every Conv2d/Linear, keyed by module name, shaped like its weight."""
    crit = get(criterion)
    if crit.weights is None:
        raise NotApplicable(f"{crit.label} scores channels only; use it with channel pruning")
    _check_data(crit, calib)
    work = _working_copy(model)  # module names in the copy are the model's names
    scores = crit.weights(work, Signals(work, calib), seed)
    return {n: s.detach().clone() for n, s in scores.items()}


def channel_scores(model: nn.Module, example_input: torch.Tensor, criterion: str,
                   calib: Calibration | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """One score per channel for every coupled channel group, keyed by unit name (core.graph)."""
    crit = get(criterion)
    _check_data(crit, calib)
    work = _working_copy(model)
    pairs = channel_groups(work, example_input)  # traced before any .grad is filled in
    scorer = crit.channels(Signals(work, calib), seed)
    out = {}
    with torch.no_grad():
        for unit, group in pairs:
            s = scorer(group)
            if s is not None:
                # Torch-Pruning divides by the mean score: an all-dead group (0/0) would come out NaN
                out[unit.name] = torch.nan_to_num(s.detach().float(), nan=0.0).clone()
    if not out:
        raise NotApplicable(f"{crit.label} gives no scores for any channel group of this model")
    return out


def per_output_channel(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum weight scores over everything but the output channel: one value per output channel."""
    return {n: s.flatten(1).sum(1) for n, s in scores.items()}

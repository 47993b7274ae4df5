"""apply(spec, config) -> PruneResult: prune a copy of the base model as a config says.

One module per granularity; this entry point dispatches, never touches the caller's model, and
re-estimates BatchNorm statistics after channels are cut.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.config import PruneConfig
from core.data import seeded_order
from core.errors import PruneLabError
from core.finetune import recalibrate_batchnorm
from core.importance import Calibration, channel_scores, weight_scores
from core.models import ModelSpec
from core.prune.channel import apply_channel
from core.prune.unstructured import apply_unstructured


@dataclass
class PruneResult:
    """The pruned copy and what was taken out of it (weights or channels per layer/unit)."""

    model: nn.Module
    removed: dict[str, int]


def check_config_matches(spec: ModelSpec, config: PruneConfig) -> None:
    """Refuse a config written for another model or other base weights."""
    if config.model != spec.name:
        raise PruneLabError(f"config is for model {config.model!r}, not {spec.name!r}")
    if config.model_fingerprint and config.model_fingerprint != spec.fingerprint:
        raise PruneLabError(
            f"config was made for other weights of {spec.name} (fingerprint {config.model_fingerprint}, "
            f"these are {spec.fingerprint})"
        )


SYNTHETIC_SAMPLES = 16  # cap for models without data: a 224x224 ResNet-50 forward costs ~0.1 s per image here


def calibration(spec: ModelSpec, samples: int, seed: int) -> Calibration:
    """The fixed, seeded subset of training data used to score (gradients, activations) and to
    re-estimate BatchNorm statistics.

    A model without data (reference zoo) gets seeded standard-normal inputs labelled with its own
    predictions instead: enough to exercise every criterion and keep BatchNorm statistics finite, and
    meaningless for accuracy — which such a model does not report."""
    if spec.split is None:
        return _synthetic(spec, min(samples, SYNTHETIC_SAMPLES), seed)
    idx = seeded_order(len(spec.split.train_x), seed)[:samples]
    return Calibration(spec.split.train_x[idx], spec.split.train_y[idx])


@torch.no_grad()
def _synthetic(spec: ModelSpec, samples: int, seed: int) -> Calibration:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *spec.example_input.shape[1:], generator=g)
    return Calibration(x, spec.model.eval()(x).argmax(1), batch_size=8)


def apply(spec: ModelSpec, config: PruneConfig) -> PruneResult:
    """Prune a deep copy of spec.model according to config (no fine-tuning here)."""
    check_config_matches(spec, config)
    calib = calibration(spec, config.calibration_samples, config.seed)
    model = copy.deepcopy(spec.model)
    if config.method == "unstructured":
        scores = weight_scores(spec.model, config.criterion, calib, config.seed)
        removed = apply_unstructured(model, config.ratios, scores)
    else:
        scores = channel_scores(spec.model, spec.example_input, config.criterion, calib, config.seed)
        removed = apply_channel(model, config.ratios, spec.example_input, scores)
        recalibrate_batchnorm(model, calib.x)
    model.eval()
    return PruneResult(model, removed)

"""apply(spec, config) -> PruneResult: prune a copy of the base model as a config says.

One module per granularity (unstructured, patterns for N:M and blocks, channel for channels and neurons,
heads, layers); `prune_step` dispatches on a working model in place (the schedules call it once per
round), `apply` prunes a deep copy once at the config's full ratios. The caller's model is never
touched. BatchNorm statistics are re-estimated after anything structural is cut.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.config import MASK_METHODS, PruneConfig
from core.data import random_inputs, seeded_order
from core.errors import PruneLabError
from core.finetune import recalibrate_batchnorm
from core.importance import Calibration, NotApplicable, channel_scores, weight_scores
from core.models import ModelSpec
from core.prune import heads as head_pruning
from core.prune.channel import apply_channel
from core.prune.layers import remove_blocks
from core.prune.patterns import apply_block, apply_nm
from core.prune.unstructured import apply_unstructured, make_permanent

HEAD_CRITERIA = ("taylor", "l1", "l2", "random")  # gate gradient (Michel et al. 2019), weight norms, random


@dataclass
class PruneResult:
    """The pruned copy and what was taken out of it (weights, channels or heads per unit; blocks)."""

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
    no_training_data = spec.split is None or len(spec.split.train_x) == 0
    if no_training_data and spec.sample_inputs is not None:  # real inputs, labelled by the model itself
        x = spec.sample_inputs[seeded_order(len(spec.sample_inputs), seed)[:samples]]
        with torch.no_grad():
            return Calibration(x, spec.model.eval()(x).argmax(1), batch_size=16)
    if spec.split is None:
        return _synthetic(spec, min(samples, SYNTHETIC_SAMPLES), seed)
    idx = seeded_order(len(spec.split.train_x), seed)[:samples]
    return Calibration(spec.split.train_x[idx], spec.split.train_y[idx])


@torch.no_grad()
def _synthetic(spec: ModelSpec, samples: int, seed: int) -> Calibration:
    g = torch.Generator().manual_seed(seed)
    x = random_inputs(spec.example_input, samples, g)
    return Calibration(x, spec.model.eval()(x).argmax(1), batch_size=8)


def apply(spec: ModelSpec, config: PruneConfig) -> PruneResult:
    """Prune a deep copy of spec.model according to config, in one step (no fine-tuning here)."""
    check_config_matches(spec, config)
    calib = calibration(spec, config.calibration_samples, config.seed)
    model = copy.deepcopy(spec.model)
    removed = prune_step(model, spec.example_input, config, config.ratios, calib, list(config.remove_blocks))
    return PruneResult(model.eval(), removed)


def prune_step(model: nn.Module, example_input: torch.Tensor, config: PruneConfig, ratios: dict[str, float],
               calib: Calibration, blocks: list[str]) -> dict[str, int]:
    """Prune `model` in place up to `ratios` — measured against the *current* model for structural
    methods (the schedules convert) and against all weights for mask methods, whose earlier zeros stay
    zero — or remove `blocks` (layer method). Returns what this step removed per unit."""
    method = config.method
    if method in MASK_METHODS:
        return _mask_step(model, config, ratios, calib)
    if method == "layer":
        removed = dict.fromkeys(blocks, 1)
        remove_blocks(model, blocks, example_input)
    elif method == "head":
        removed = _head_step(model, config, ratios, calib)
    else:  # channel, neuron: both are coupled channel groups cut through Torch-Pruning
        scores = channel_scores(model, example_input, config.criterion, calib, config.seed)
        removed = apply_channel(model, {u: r for u, r in ratios.items() if r > 0}, example_input, scores)
    recalibrate_batchnorm(model, calib.x)
    return removed


def _mask_step(model: nn.Module, config: PruneConfig, ratios: dict[str, float], calib: Calibration
               ) -> dict[str, int]:
    """Fold earlier masks in, score the weights, keep earlier zeros lowest (pruning only grows), mask."""
    make_permanent(model)
    scores = weight_scores(model, config.criterion, calib, config.seed)
    modules = dict(model.named_modules())
    scores = {n: torch.where(modules[n].weight.detach() == 0, torch.full_like(s, -torch.inf), s)
              for n, s in scores.items()}
    active = {u: r for u, r in ratios.items() if r > 0}
    if config.method == "unstructured":
        return apply_unstructured(model, active, scores)
    if config.method == "block":
        return apply_block(model, active, scores, config.pattern.block)
    result = apply_nm(model, list(active), scores, config.pattern.n, config.pattern.m)
    return result.removed


def head_scores(model: nn.Module, criterion: str, calib: Calibration, seed: int) -> dict[str, torch.Tensor]:
    """One score per head of every attention module: the loss gradient of a gate on the head's output
    (taylor; Michel et al. 2019), the L1/L2 norm of the head's q/k/v rows and output-projection columns,
    or seeded random numbers."""
    if criterion not in HEAD_CRITERIA:
        raise NotApplicable(f"heads are ranked by {', '.join(HEAD_CRITERIA)}; {criterion!r} scores weights or "
                            "channels")
    if criterion == "taylor":
        return head_pruning.head_importance(model, calib)
    modules, out = dict(model.named_modules()), {}
    gen = torch.Generator().manual_seed(seed)
    for name, n in head_pruning.attention_modules(model).items():
        if criterion == "random":
            out[name] = torch.rand(n, generator=gen)
            continue
        attn, p = modules[name], 1 if criterion == "l1" else 2
        rows = [getattr(attn, x).weight.detach().reshape(n, -1) for x in ("q", "k", "v")]
        cols = attn.proj.weight.detach().T.reshape(n, -1)
        out[name] = torch.cat([*rows, cols], dim=1).norm(p=p, dim=1)
    return out


def _head_step(model: nn.Module, config: PruneConfig, ratios: dict[str, float], calib: Calibration
               ) -> dict[str, int]:
    scores = head_scores(model, config.criterion, calib, config.seed)
    unknown = sorted(set(ratios) - set(scores))
    if unknown:
        raise PruneLabError(f"not attention modules of this model: {', '.join(unknown)}")
    plan = head_pruning.heads_to_remove(scores, {u: r for u, r in ratios.items() if r > 0})
    return head_pruning.remove_heads(model, plan)

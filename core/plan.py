"""From one number to a config: the per-unit ratios (or blocks) that "remove R" means for each method.

- unstructured: R of every layer's weights, or — global scope — one score threshold across all layers
  (each layer loses its weights below it; layers differ, the total is R);
- nm: every layer that can hold the pattern gets 1 - N/M (R must be that or omitted);
- block, channel, neuron, head: R of every layer / channel group / hidden-unit group / attention module;
- layer: the round(R x blocks) removable blocks that matter least, ranked by how little a block changes
  its input (cosine) or by the accuracy lost without it (sensitivity, on training images the
  calibration did not use; BatchNorm re-estimated).
The command line and the dashboard both call `plan`, so "--ratio 0.5" means the same everywhere.
"""

from __future__ import annotations

import copy

import torch

from core.config import Pattern, check_ratio
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.finetune import recalibrate_batchnorm
from core.graph import units
from core.importance import weight_scores
from core.models import ModelSpec, require_data
from core.prune import calibration
from core.prune.layers import block_scores, rank_blocks, remove_blocks

SCOPES = ("layer", "global")
RANKINGS = ("cosine", "sensitivity")


def plan(spec: ModelSpec, method: str, ratio: float | None, *, criterion: str = "l1", pattern: Pattern | None = None,
         scope: str = "layer", rank: str = "cosine", calibration_samples: int = 512,
         seed: int = 0) -> tuple[dict[str, float], tuple[str, ...]]:
    """(ratios, remove_blocks) for a PruneConfig of `method` removing `ratio` (see module docstring)."""
    if method == "nm":
        return nm_ratios(spec, pattern or Pattern(), ratio), ()
    if ratio is None:
        raise PruneLabError(f"--ratio is needed for the {method} method")
    ratio = check_ratio(method, ratio)
    if method == "layer":
        return {}, tuple(blocks_to_remove(spec, ratio, rank, calibration_samples, seed))
    found = units(spec.model, spec.example_input, method)
    if not found:
        raise PruneLabError(f"{spec.name} has nothing the {method} method can prune ({_what(method)})")
    if scope == "global":
        if method != "unstructured":
            raise PruneLabError("a global threshold is for unstructured pruning; other methods prune per unit")
        return global_ratios(spec, ratio, criterion, calibration_samples, seed), ()
    return {u.name: ratio for u in found}, ()


def _what(method: str) -> str:
    return {"neuron": "no hidden Linear layer outside attention and the classifier",
            "head": "no attention module with q/k/v/proj projections",
            "layer": "no residual block whose input and output shapes match"}.get(method, "no layer")


def nm_ratios(spec: ModelSpec, pattern: Pattern, ratio: float | None) -> dict[str, float]:
    """1 - N/M for every Conv2d/Linear whose weight has more than one input channel per group."""
    share = round(1 - pattern.n / pattern.m, 6)
    if ratio is not None and abs(ratio - share) > 1e-6:
        raise PruneLabError(f"N:M {pattern.n}:{pattern.m} removes exactly {share:g} of each layer; "
                            f"--ratio {ratio:g} cannot be met (omit --ratio or change --nm)")
    modules = dict(spec.model.named_modules())
    return {u.name: share for u in units(spec.model, spec.example_input, "nm")
            if modules[u.name].weight.shape[1] > 1}


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


def blocks_to_remove(spec: ModelSpec, ratio: float, rank: str = "cosine", calibration_samples: int = 512,
                     seed: int = 0) -> list[str]:
    """The round(ratio x removable blocks) blocks ranked least important, least important first."""
    if rank not in RANKINGS:
        raise PruneLabError(f"unknown block ranking {rank!r}; choose one of {', '.join(RANKINGS)}")
    blocks = [u.name for u in units(spec.model, spec.example_input, "layer")]
    if not blocks:
        raise PruneLabError(f"{spec.name} has nothing the layer method can prune ({_what('layer')})")
    calib = calibration(spec, calibration_samples, seed)
    scores = (block_scores(spec.model, blocks, calib.x) if rank == "cosine"
              else block_drops(spec, blocks, calib.x, seed))
    return rank_blocks(scores)[: round(ratio * len(blocks))]


def block_drops(spec: ModelSpec, blocks: list[str], calib_x: torch.Tensor, seed: int,
                eval_samples: int = 1000) -> dict[str, float]:
    """Accuracy lost when each block alone is removed (BatchNorm re-estimated on calib_x), on training
    images after the calibration subset — the test set stays untouched."""
    from core.data import seeded_order

    split = require_data(spec, "ranking blocks by sensitivity")
    rest = seeded_order(len(split.train_x), seed)[len(calib_x):][:eval_samples]
    x, y = split.train_x[rest], split.train_y[rest]
    base = evaluate(spec.model, x, y)["accuracy"]
    drops = {}
    for block in blocks:
        model = copy.deepcopy(spec.model)
        remove_blocks(model, [block])
        recalibrate_batchnorm(model, calib_x)
        drops[block] = base - evaluate(model, x, y)["accuracy"]
    return drops

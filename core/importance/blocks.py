"""Scores of residual blocks, by which layer pruning (core.prune.layers) removes the blocks that matter
least: block influence (Men et al. 2024, ShortGPT: how much a block changes its input) or the accuracy
lost when the block alone is removed."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.data import seeded_order
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.finetune import recalibrate_batchnorm
from core.prune.layers import remove_blocks
from core.spec import ModelSpec, require_data
from core.structure import forward_with_hooks
from core.token_positions import real_only, real_tokens


def block_scores(model: nn.Module, blocks: list[str], x: Tensor, batch_size: int = 64) -> dict[str, float]:
    """Block influence of each named block: 1 - mean cosine similarity between its input and output.

    Each sample's input and output are flattened (all channels, positions or tokens; of a padded text batch,
    its real tokens only: core.token_positions) and compared; the mean is over the images x (in eval mode,
    without gradients, one forward pass for all blocks). 0 means the block passes its input through unchanged
    (safe to remove), 2 that it flips its sign; the result is clamped to [0, 2] against float rounding.
    """
    modules = dict(model.named_modules())
    unknown = [b for b in blocks if not b or b not in modules]
    if unknown:
        raise PruneLabError(f"not modules of this model: {', '.join(map(repr, unknown))}")
    total = dict.fromkeys(blocks, 0.0)
    count = dict.fromkeys(blocks, 0)
    real: list[Tensor | None] = [None]  # the running batch's real-token positions (None: every position counts)

    def record(name: str, inp: Tensor, out: object) -> None:
        if not isinstance(out, Tensor) or out.shape != inp.shape:
            raise PruneLabError(f"block {name!r} changes its input's shape; it has no input/output similarity")
        inp, out = real_only(inp, real[0]), real_only(out, real[0])  # padding: zero in both, adds nothing
        cos = F.cosine_similarity(inp.flatten(1).double(), out.flatten(1).double(), dim=1)
        total[name] += float(cos.sum())
        count[name] += len(cos)

    def tracked(batches: tuple[Tensor, ...]) -> Iterator[Tensor]:
        for xb in batches:
            real[0] = real_tokens(model, xb)
            yield xb

    forward_with_hooks(model, blocks, tracked(x.split(batch_size)), record)
    silent = [b for b in blocks if count[b] == 0]
    if silent:
        raise PruneLabError(f"blocks never called in the forward pass: {', '.join(map(repr, silent))}")
    return {b: min(2.0, max(0.0, 1.0 - total[b] / count[b])) for b in blocks}


def block_drops(spec: ModelSpec, blocks: list[str], calib_x: torch.Tensor, seed: int,
                eval_samples: int = 1000) -> dict[str, float]:
    """Accuracy lost when each block alone is removed (BatchNorm re-estimated on calib_x), on training
    images after the calibration subset — the test set stays untouched."""
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

"""Block sparsity: zero aligned (rows, cols) blocks of each layer's 2-D weight, lowest summed score first."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.methods.mask import MaskMethod
from core.protocols import PatternLike
from core.prune.patterns import apply_block, block_mask


class Block(MaskMethod):
    name: ClassVar[str] = "block"
    help: ClassVar[str] = ("zeroes aligned blocks of weights · mask: same dense size; faster only with "
                           "block-sparse kernels")
    pattern: ClassVar[str | None] = "block"
    schedules: ClassVar[tuple[str, ...]] = ("oneshot", "iterative", "dynamic")
    repairs: ClassVar[tuple[str, ...]] = ("lstsq",)  # SparseGPT's column-by-column masks cannot be blocks

    def mask_layers(self, model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor],
                    pattern: PatternLike) -> dict[str, int]:
        return apply_block(model, ratios, scores, pattern.block)

    def dynamic_mask(self, scores: torch.Tensor, ratio: float, pattern: PatternLike) -> torch.Tensor:
        return block_mask(scores, ratio, pattern.block)

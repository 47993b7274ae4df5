"""Layer pruning: remove whole residual blocks (ResNet blocks, inverted residuals, transformer blocks).

A residual block computes out = x + f(x) with out shaped like x, so replacing it by nn.Identity() drops f
and leaves a network that still runs and still means something: the skip path was already carrying x
past the block. Blocks that change shape (a strided or widening ResNet block, whose shortcut is a 1x1
projection) cannot go, and neither can plain layers or containers.

Which blocks qualify is core.structure's (removable_blocks); which to drop is decided by "block influence"
(core.importance.blocks; Men et al. 2024, ShortGPT): a block that barely changes its input goes first.
"""

from __future__ import annotations

from torch import Tensor, nn

from core.errors import PruneLabError
from core.ratios import check_ratio
from core.structure import removable_blocks, residual_blocks


class PassThrough(nn.Identity):
    """What a removed block becomes: returns its first input unchanged and ignores the rest (a
    transformer layer is also handed its attention mask)."""

    def forward(self, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        return x


def remove_blocks(model: nn.Module, names: list[str], example_input: Tensor | None = None) -> int:
    """Replace each named block by nn.Identity() in place; returns how many were removed.

    Every name must be a removable block: with example_input, one of removable_blocks(model,
    example_input) (shape checked on a forward pass); without it, one of residual_blocks(model) (the
    structural rule alone, which holds for any block whose residual add runs). Nothing changes unless all
    names are valid. Repeated names count once.
    """
    allowed = removable_blocks(model, example_input) if example_input is not None else residual_blocks(model)
    modules = dict(model.named_modules())
    unknown = [n for n in names if not n or n not in modules]
    if unknown:
        raise PruneLabError(f"not modules of this model: {', '.join(map(repr, unknown))}")
    refused = [n for n in names if n not in allowed]
    if refused:
        raise PruneLabError(f"not removable blocks (residual, same input and output shape): "
                            f"{', '.join(map(repr, refused))}; removable: {', '.join(allowed) or 'none'}")
    unique = list(dict.fromkeys(names))
    for name in unique:
        model.set_submodule(name, PassThrough())
    return len(unique)


def rank_blocks(scores: dict[str, float]) -> list[str]:
    """Block names from lowest score (safest to remove) to highest; ties keep the order given."""
    return sorted(scores, key=scores.__getitem__)  # sorted is stable


def choose_blocks(scores: dict[str, float], ratio: float) -> list[str]:
    """The round(ratio * number of blocks) lowest-scoring blocks, lowest first; 0 <= ratio < 1."""
    ratio = check_ratio("blocks", ratio)
    return rank_blocks(scores)[: round(ratio * len(scores))]

"""Layer pruning: remove whole residual blocks (ResNet blocks, inverted residuals, transformer blocks).

A residual block computes out = x + f(x) with out shaped like x, so replacing it by nn.Identity() drops f
and leaves a network that still runs and still means something: the skip path was already carrying x
past the block. Blocks that change shape (a strided or widening ResNet block, whose shortcut is a 1x1
projection) cannot go, and neither can plain layers or containers.

Which blocks to drop is decided by "block influence" (Men et al. 2024, ShortGPT): 1 - cosine similarity
between a block's input and output. A block that barely changes its input is the cheapest to remove.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import check_ratio
from core.errors import PruneLabError


def is_residual(module: nn.Module) -> bool:
    """Whether module is a residual block by its structure (no forward needed). The rule, first match wins:

    - a `shortcut` attribute: residual only when it is nn.Identity (a conv shortcut means the block
      changes shape: ResNet BasicBlock/Bottleneck that downsample or widen);
    - a `use_residual` attribute: residual only when it is True (MobileNetV2 InvertedResidual);
    - `attn` and `fc1` or `mlp` submodules: a transformer block, which adds both to its input.

    Attributes rather than class names, so look-alike blocks from other code are recognised as well; a
    leaf layer (no children) is never a block.
    """
    if not any(True for _ in module.children()):
        return False
    if hasattr(module, "shortcut"):
        return isinstance(module.shortcut, nn.Identity)
    if hasattr(module, "use_residual"):
        return module.use_residual is True
    child = lambda name: isinstance(getattr(module, name, None), nn.Module)  # noqa: E731
    return child("attn") and (child("fc1") or child("mlp"))


def _innermost(names: Iterable[str]) -> list[str]:
    """names without those that contain another of them (a block inside a block: the inner one is kept,
    so no listed block is nested in another and removing one never invalidates another's name)."""
    names = list(names)
    return [n for n in names if not any(other.startswith(n + ".") for other in names)]


def residual_blocks(model: nn.Module) -> list[str]:
    """Dotted names of the innermost residual blocks of model (is_residual), in module order."""
    return _innermost(name for name, m in model.named_modules() if name and is_residual(m))


def _record_calls(model: nn.Module, names: list[str], record: Callable[[str, Tensor, object], None]):
    """Forward hooks calling record(name, first input, output) for each named module; returns the handles."""
    modules = dict(model.named_modules())

    def hook_for(name: str):
        def hook(_module, args, output):
            if args and isinstance(args[0], Tensor):
                record(name, args[0], output)
        return hook

    return [modules[name].register_forward_hook(hook_for(name)) for name in names]


@torch.no_grad()
def _forward_with_hooks(model: nn.Module, names: list[str], inputs: Iterable[Tensor],
                        record: Callable[[str, Tensor, object], None]) -> None:
    """Run model in eval mode over inputs with record hooked on the named modules; restore mode, drop hooks."""
    was_training = model.training
    handles = _record_calls(model, names, record)
    try:
        model.eval()
        for xb in inputs:
            model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def removable_blocks(model: nn.Module, example_input: Tensor) -> list[str]:
    """Dotted names of the blocks that can be replaced by identity, in module order.

    A block qualifies when it is residual (is_residual) and, on one forward pass of example_input, every
    call returned a tensor of exactly its input's shape. Only the innermost such blocks are listed
    (`layer1.1`, `features.5`, `blocks.2`); a model without residual blocks (an MLP) has none.
    """
    candidates = residual_blocks(model)
    seen: dict[str, bool] = {}

    def record(name: str, x: Tensor, out: object) -> None:
        same = isinstance(out, Tensor) and out.shape == x.shape
        seen[name] = seen.get(name, True) and same

    _forward_with_hooks(model, candidates, [example_input], record)
    return [name for name in candidates if seen.get(name, False)]  # never called: no evidence, not listed


def block_scores(model: nn.Module, blocks: list[str], x: Tensor, batch_size: int = 64) -> dict[str, float]:
    """Block influence of each named block: 1 - mean cosine similarity between its input and output.

    Each sample's input and output are flattened (all channels, positions or tokens) and compared; the
    mean is over the images x (in eval mode, without gradients, one forward pass for all blocks). 0 means
    the block passes its input through unchanged (safe to remove), 2 that it flips its sign; the result
    is clamped to [0, 2] against float rounding.
    """
    modules = dict(model.named_modules())
    unknown = [b for b in blocks if not b or b not in modules]
    if unknown:
        raise PruneLabError(f"not modules of this model: {', '.join(map(repr, unknown))}")
    total = dict.fromkeys(blocks, 0.0)
    count = dict.fromkeys(blocks, 0)

    def record(name: str, inp: Tensor, out: object) -> None:
        if not isinstance(out, Tensor) or out.shape != inp.shape:
            raise PruneLabError(f"block {name!r} changes its input's shape; it has no input/output similarity")
        cos = F.cosine_similarity(inp.flatten(1).double(), out.flatten(1).double(), dim=1)
        total[name] += float(cos.sum())
        count[name] += len(cos)

    _forward_with_hooks(model, blocks, x.split(batch_size), record)
    silent = [b for b in blocks if count[b] == 0]
    if silent:
        raise PruneLabError(f"blocks never called in the forward pass: {', '.join(map(repr, silent))}")
    return {b: min(2.0, max(0.0, 1.0 - total[b] / count[b])) for b in blocks}


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

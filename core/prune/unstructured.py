"""Unstructured magnitude pruning: zero the smallest weights of each layer through masks.

Scores and masks are computed here; torch.nn.utils.prune installs them (weight = weight_orig * mask),
so fine-tuning keeps pruned weights at zero. Masks make nothing smaller or faster by themselves: that
needs a sparse encoding or sparse kernels; `make_permanent` bakes them in before export.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from core.errors import PruneLabError
from core.structure import PRUNABLE


def mask_from_scores(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask (1 = keep) zeroing the round(ratio * n) lowest-scoring weights."""
    flat = scores.flatten()
    # torch.nn.utils.prune's rounding, but never the whole layer: an emptied layer would cut the network in
    # two (core.graph.emptied reports the layers clamped this way)
    n_prune = min(round(ratio * flat.numel()), flat.numel() - 1)
    mask = torch.ones_like(flat)
    if n_prune:
        mask[torch.topk(flat, k=n_prune, largest=False).indices] = 0
    return mask.view_as(scores)


def magnitude_mask(weight: torch.Tensor, ratio: float, p: int = 1) -> torch.Tensor:
    """Keep-mask that zeroes the round(ratio * n) weights of smallest magnitude (L1 and L2 rank alike)."""
    return mask_from_scores(weight.detach().abs().pow(p), ratio)


def apply_unstructured(model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor] | None = None
                       ) -> dict[str, int]:
    """Mask each named layer's weight in place at its ratio, lowest scores first (default: magnitude);
    returns the weights zeroed per layer."""
    modules = dict(model.named_modules())
    removed = {}
    for name, ratio in ratios.items():
        module = modules.get(name)
        if not isinstance(module, PRUNABLE):
            raise PruneLabError(f"{name!r} is not a Conv2d or Linear layer of this model")
        if ratio <= 0:
            continue
        mask = mask_from_scores(scores[name], ratio) if scores is not None else magnitude_mask(module.weight, ratio)
        prune.custom_from_mask(module, "weight", mask)
        removed[name] = int((mask == 0).sum())
    return removed


def pruning_hooks(model: nn.Module):
    """(module, hook) for every torch.nn.utils.prune mask installed in model."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                yield module, hook


@torch.no_grad()
def refresh_masked(model: nn.Module) -> None:
    """Recompute masked weights outside autograd.

    After a training step a masked weight is a non-leaf tensor (weight_orig * mask with a grad_fn),
    which copy.deepcopy refuses; recomputing it under no_grad makes the model copyable again.
    """
    for module, hook in pruning_hooks(model):
        setattr(module, hook._tensor_name, hook.apply_mask(module))


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every torch.nn.utils.prune mask into its weight (in place), leaving a plain dense model."""
    for module, hook in list(pruning_hooks(model)):
        prune.remove(module, hook._tensor_name)
    return model

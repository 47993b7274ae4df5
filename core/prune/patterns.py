"""Semi-structured pruning: N:M patterns along the input dimension, and whole aligned blocks.

Like core.prune.unstructured, masks are computed here from per-weight scores (higher = more important)
and installed with torch.nn.utils.prune (weight = weight_orig * mask), so fine-tuning keeps pruned weights
at zero and `make_permanent` folds them in before export. The zeros only turn into speed where the
runtime knows the pattern: 2:4 along the input dimension is what NVIDIA's sparse tensor cores execute,
and small blocks (e.g. 4x1) are what block-sparse CPU kernels skip.

Layout and rules:

- N:M groups run along the weight's input dimension (dim 1): Linear (out, in) in groups of m along `in`;
  Conv2d (out, in, kh, kw) in groups of m consecutive input channels at each (out, kh, kw) position, the
  layout of a conv weight once its input-channel dimension is moved last (as the sparse kernels store it).
  A trailing partial group of r < m weights keeps ceil(r * n / m) of them (n per m, rounded up).
  Among equal scores the earlier input channel is kept.
- A layer whose weight has a single input channel (depthwise convs, convs on one-channel images) has no
  group to choose within: apply_nm skips it and reports it in `NMResult.skipped` rather than failing,
  so callers may pass "every Conv2d/Linear" and show what could not take the pattern.
- Blocks tile the 2-D weight view (out, in * kh * kw) from (0, 0) in steps of the block shape. Block
  score = sum of its weight scores; an edge block cut short by the weight's border scores as its mean
  times the full block size, so it is neither favoured (fewer weights to sum) nor penalised. The
  round(ratio * blocks) lowest-scoring blocks are pruned (Python's round, as in unstructured pruning);
  among equal scores the earlier block in row-major order is pruned first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune

from core.errors import PruneLabError
from core.structure import PRUNABLE


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise PruneLabError(f"an N:M pattern needs integers 0 < n < m, got n={n!r}, m={m!r}")


def _keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask over the last dim keeping the k highest scores of each row (ties: earlier index kept)."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros_like(scores)
    return mask.scatter_(-1, order[..., :k], 1.0)


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep-mask (1 = keep) keeping the n highest scores in every m consecutive weights along the input
    dimension (dim 1); a trailing partial group of r weights keeps ceil(r * n / m). Shaped like scores."""
    _check_nm(n, m)
    if scores.dim() < 2:
        raise PruneLabError(f"N:M masks need a weight with an input dimension, got shape {tuple(scores.shape)}")
    rows = scores.movedim(1, -1)  # (out, kh, kw, in): input channels last, as the sparse kernels store them
    width = rows.shape[-1]
    full = width - width % m
    parts = []
    if full:
        grouped = rows[..., :full].reshape(*rows.shape[:-1], full // m, m)
        parts.append(_keep_top(grouped, n).flatten(-2))
    if full < width:
        tail = width - full
        parts.append(_keep_top(rows[..., full:], -(-tail * n // m)))
    return torch.cat(parts, dim=-1).movedim(-1, 1).contiguous()


def _check_block(ratio: float, block: tuple[int, int]) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise PruneLabError(f"block pruning ratio must be within [0, 1], got {ratio}")
    if len(block) != 2 or not all(isinstance(b, int) and b >= 1 for b in block):
        raise PruneLabError(f"block shape must be two positive integers (rows, cols), got {block!r}")


def block_scores(view: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Score of every aligned block of a 2-D tensor: the sum of its scores, edge blocks scaled up to
    the full block size (their mean times rows * cols)."""
    br, bc = block
    rows, cols = view.shape
    pad = (0, -cols % bc, 0, -rows % br)  # pad right and bottom up to whole blocks
    shape = ((rows + pad[3]) // br, br, (cols + pad[1]) // bc, bc)
    sums = nn.functional.pad(view, pad).reshape(shape).sum(dim=(1, 3))
    counts = nn.functional.pad(torch.ones_like(view), pad).reshape(shape).sum(dim=(1, 3))
    return sums * (br * bc / counts)  # exactly 1.0 for full blocks: their score is their plain sum


def block_mask(scores: torch.Tensor, ratio: float, block: tuple[int, int] = (4, 1)) -> torch.Tensor:
    """Keep-mask (1 = keep) pruning the round(ratio * blocks) lowest-scoring aligned blocks of the 2-D
    weight view (out, everything else); returned in the weight's own shape."""
    _check_block(ratio, block)
    if scores.dim() < 2:
        raise PruneLabError(f"block masks need a weight with an input dimension, got shape {tuple(scores.shape)}")
    view = scores.reshape(scores.shape[0], -1)
    per_block = block_scores(view, block).flatten()
    n_prune = min(round(ratio * per_block.numel()), per_block.numel() - 1)  # at least one block stays
    keep = torch.ones_like(per_block)
    keep[torch.sort(per_block, stable=True).indices[:n_prune]] = 0
    grid = keep.view(-(-view.shape[0] // block[0]), -1)
    mask = grid.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    return mask[: view.shape[0], : view.shape[1]].reshape(scores.shape).contiguous()


@dataclass
class NMResult:
    """What apply_nm did: weights zeroed per layer, and layers left dense with the reason why."""

    removed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _prunable(modules: dict[str, nn.Module], name: str) -> nn.Module:
    module = modules.get(name)
    if not isinstance(module, PRUNABLE):
        raise PruneLabError(f"{name!r} is not a Conv2d or Linear layer of this model")
    return module


def _scores_for(module: nn.Module, name: str, scores: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """The layer's scores (default |weight|), checked to be shaped like its weight."""
    if scores is None:
        return module.weight.detach().abs()
    if name not in scores:
        raise PruneLabError(f"no scores given for layer {name!r}")
    if scores[name].shape != module.weight.shape:
        raise PruneLabError(f"scores for {name!r} have shape {tuple(scores[name].shape)}, "
                            f"its weight {tuple(module.weight.shape)}")
    return scores[name]


def _install(module: nn.Module, mask: torch.Tensor) -> int:
    """Mask module.weight in place; returns the number of weights the mask zeroes."""
    prune.custom_from_mask(module, "weight", mask.to(module.weight.dtype))
    return int((mask == 0).sum())


def apply_nm(model: nn.Module, layers: dict[str, tuple[int, int]] | list[str],
             scores: dict[str, torch.Tensor] | None = None, n: int = 2, m: int = 4) -> NMResult:
    """Mask each named layer's weight in place to an N:M pattern along its input dimension.

    `layers` maps names to their own (n, m), or lists names that all take the (n, m) arguments. Scores
    default to |weight|. Layers with a single input channel (depthwise convs) are skipped and reported.
    """
    patterns = layers if isinstance(layers, dict) else dict.fromkeys(layers, (n, m))
    modules = dict(model.named_modules())
    result = NMResult()
    for name, (ln, lm) in patterns.items():
        module = _prunable(modules, name)
        _check_nm(ln, lm)
        if module.weight.shape[1] == 1:
            result.skipped[name] = "one input channel per output: no group to choose within (depthwise?)"
            continue
        result.removed[name] = _install(module, nm_mask(_scores_for(module, name, scores), ln, lm))
    return result


def apply_block(model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor] | None = None,
                block: tuple[int, int] = (4, 1)) -> dict[str, int]:
    """Mask whole aligned blocks of each named layer's weight in place at its ratio, lowest scores first
    (default: |weight|); returns the weights zeroed per layer (layers at ratio 0 are left unmasked)."""
    modules = dict(model.named_modules())
    removed = {}
    for name, ratio in ratios.items():
        module = _prunable(modules, name)
        _check_block(ratio, block)
        if ratio <= 0:
            continue
        removed[name] = _install(module, block_mask(_scores_for(module, name, scores), ratio, block))
    return removed

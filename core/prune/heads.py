"""Head pruning: physically remove whole attention heads, lowest-scoring first (core.importance.heads).

Attention modules are the hand-written ones of core.structure (SplitAttention below is one). Head h owns
rows [h*d, (h+1)*d) of q, k and v (d = width / num_heads, as the forward's reshape splits them) and the
same columns of proj's input. Removing a head slices those rows and columns out and lowers num_heads:
the other heads compute exactly what they did before, so removal equals zeroing that head's output.

nn.MultiheadAttention keeps q, k and v packed in one matrix; `convert_multihead_attention` first swaps
each one for an equivalent SplitAttention, whose heads can then be scored and removed like the others.
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

from core.attention import Attention, attention_views, group_heads, kept_indices, per_head_tables, write_back
from core.errors import PruneLabError
from core.structure import attention_module

# ---------------------------------------------------------------------------------------------------
# Converting nn.MultiheadAttention into a hand-written attention module


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A mask as nn.MultiheadAttention reads it: bool True = not attended (-inf), float = added to scores."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class SplitAttention(nn.Module):
    """nn.MultiheadAttention (kdim == vdim == embed_dim) with separate q/k/v/proj Linears, so that heads
    can be removed one by one: same weights, same call (query, key, value, key_padding_mask, attn_mask,
    is_causal; batch_first or not; unbatched inputs), same outputs.

    Returns (output, None) whatever need_weights says: attention weights are never computed for the
    caller. Dropout (on attention weights, training mode only) matches MHA's in distribution, not in its
    random stream. A 3-D attn_mask must be (batch * current num_heads, L, S), as MHA's is.

    nn.TransformerEncoder(Layer) reads in_proj_bias and _qkv_same_embed_dim of its attention to pick a fused
    fast path that needs MHA's packed weights: None here tells it "no packed bias", so it takes the plain path.
    """

    in_proj_bias = None  # no packed q/k/v bias: keeps nn.TransformerEncoder(Layer) off its fused fast path
    _qkv_same_embed_dim = True

    def __init__(self, embed_dim: int, num_heads: int, *, qkv_bias: bool = True, proj_bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise PruneLabError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.batch_first = batch_first
        self.dropout = dropout
        make = lambda bias: nn.Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)  # noqa: E731
        self.q, self.k, self.v = make(qkv_bias), make(qkv_bias), make(qkv_bias)
        self.proj = make(proj_bias)

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> SplitAttention:
        """An equivalent module carrying mha's weights (copied; dtype, device, requires_grad and mode kept)."""
        e, packed, packed_bias = mha.embed_dim, mha.in_proj_weight, mha.in_proj_bias
        new = cls(e, mha.num_heads, qkv_bias=packed_bias is not None, proj_bias=mha.out_proj.bias is not None,
                  batch_first=mha.batch_first, dropout=mha.dropout, device=packed.device, dtype=packed.dtype)
        for i, lin in enumerate((new.q, new.k, new.v)):
            _copy_param(lin.weight, packed, slice(i * e, (i + 1) * e))
            if packed_bias is not None:
                _copy_param(lin.bias, packed_bias, slice(i * e, (i + 1) * e))
        _copy_param(new.proj.weight, mha.out_proj.weight, slice(None))
        if mha.out_proj.bias is not None:
            _copy_param(new.proj.bias, mha.out_proj.bias, slice(None))
        return new.train(mha.training)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        """MHA's call; need_weights and average_attn_weights are accepted and ignored (weights: None)."""
        batched = query.dim() == 3
        if not batched:  # (L, E): a batch of one
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, b, E) -> (b, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        mask = self._mask(query, key, key_padding_mask, attn_mask, is_causal)
        out = self._attend(query, key, value, mask)
        if not batched:
            return out.squeeze(0), None
        return (out if self.batch_first else out.transpose(0, 1)), None

    def _mask(self, query: torch.Tensor, key: torch.Tensor, key_padding_mask: torch.Tensor | None,
              attn_mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor | None:
        """One additive mask broadcastable to (b, heads, L, S), or None."""
        b, length, source = query.shape[0], query.shape[1], key.shape[1]
        if attn_mask is None and is_causal:  # MHA insists on the mask; building it is harmless
            attn_mask = torch.ones(length, source, dtype=torch.bool, device=query.device).triu(1)
        mask = _additive(attn_mask, query.dtype)
        if mask is not None and mask.dim() == 3:  # (b * heads, L, S), batch-major like MHA
            mask = mask.reshape(b, self.num_heads, length, source)
        padding = _additive(key_padding_mask, query.dtype)
        if padding is not None:
            padding = padding.reshape(b, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """Scaled dot-product attention per head on batch-first inputs, then the output projection."""
        b, length, _ = query.shape
        split = lambda t: t.reshape(b, t.shape[1], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(value))
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores + mask
        attn = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, length, -1))


def _copy_param(target: nn.Parameter, source: torch.Tensor, rows: slice) -> None:
    """target <- source[rows], and target.requires_grad <- source.requires_grad."""
    with torch.no_grad():
        target.copy_(source[rows])
    target.requires_grad_(source.requires_grad)


def _check_convertible(name: str, mha: nn.MultiheadAttention) -> None:
    """Refuse what SplitAttention does not reproduce: other key/value widths, bias_k/v, zero attention."""
    if not mha._qkv_same_embed_dim:
        raise PruneLabError(f"{name}: MultiheadAttention with kdim/vdim ({mha.kdim}/{mha.vdim}) other than "
                            f"embed_dim ({mha.embed_dim}) is not supported for head pruning")
    if mha.bias_k is not None or mha.add_zero_attn:
        raise PruneLabError(f"{name}: MultiheadAttention with add_bias_kv or add_zero_attn is not supported "
                            "for head pruning")


def convert_multihead_attention(model: nn.Module) -> int:
    """Replace, in place, every nn.MultiheadAttention in model by an equivalent SplitAttention; returns
    how many modules were converted. Everything is checked before anything is replaced."""
    paths: dict[nn.MultiheadAttention, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):  # a shared module: every path to it
        if isinstance(m, nn.MultiheadAttention):
            paths.setdefault(m, []).append(name)
    for mha, names in paths.items():
        if "" in names:
            raise PruneLabError("the model itself is a MultiheadAttention: wrap it in a module to convert it")
        _check_convertible(names[0], mha)
    for mha, names in paths.items():
        new = SplitAttention.from_multihead(mha)
        for name in names:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, new)
    return len(paths)


# ---------------------------------------------------------------------------------------------------
# Choosing and removing heads


def heads_to_remove(scores: dict[str, torch.Tensor], ratios: dict[str, float]) -> dict[str, list[int]]:
    """Per module in ratios, the round(ratio * H) lowest-scoring head indices (ascending), ties broken
    by the lower index first.

    At most H - 1 heads are chosen (ratio 1.0 keeps the best head): a module without heads would not
    run. round() is Python's (half to even: 0.5 of 3 heads is 2, 0.5 of 5 is 2), as core.graph uses.
    """
    plan = {}
    for name, ratio in ratios.items():
        if name not in scores:
            raise PruneLabError(f"no head scores for {name!r}")
        if not 0.0 <= ratio <= 1.0:
            raise PruneLabError(f"{name}: head ratio {ratio} is outside [0, 1]")
        values = scores[name].detach().flatten().tolist()
        if not all(math.isfinite(v) for v in values):
            raise PruneLabError(f"{name}: head scores are not all finite")
        count = min(round(ratio * len(values)), len(values) - 1)
        order = sorted(range(len(values)), key=lambda h: (values[h], h))
        plan[name] = sorted(order[:count])
    return plan


def _check_cuttable(view: Attention) -> None:
    """Refuse a module whose projections carry unstructured masks (slicing would drop weight_orig/mask)."""
    if any(hasattr(view.projection(p), "weight_orig") for p in "qkvo"):
        raise PruneLabError(f"{view.name}: its projections carry unstructured pruning masks; remove heads first")


def _validated(name: str, indices: list[int], model: nn.Module) -> list[int]:
    """indices (head groups) as a sorted list, after every check that remove_heads promises."""
    view = attention_module(model, name)
    groups = view.groups
    _check_cuttable(view)
    bad = [h for h in indices if isinstance(h, bool) or not isinstance(h, Integral) or not 0 <= h < groups]
    if bad:
        raise PruneLabError(f"{name}: head indices {bad} are not in 0..{groups - 1}")
    indices = sorted(int(h) for h in indices)
    if len(set(indices)) != len(indices):
        raise PruneLabError(f"{name}: duplicate head indices in {indices}")
    if len(indices) >= groups:
        raise PruneLabError(f"{name}: cannot remove all {groups} heads; keep at least one")
    return indices


def _slice(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep only `index` along the Linear's output (dim 0) or input (dim 1) features, in place; the module
    object stays (hooks, type), its parameters are new tensors with the same dtype, device, requires_grad."""
    with torch.no_grad():
        w = linear.weight
        linear.weight = nn.Parameter(w.index_select(dim, index).clone(), requires_grad=w.requires_grad)
        if dim == 0 and linear.bias is not None:
            b = linear.bias
            linear.bias = nn.Parameter(b.index_select(0, index).clone(), requires_grad=b.requires_grad)
    if dim == 0:
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def _slice_table(owner: nn.Module, attr: str, heads: list[int]) -> None:
    """Keep the columns of the kept heads in a per-head parameter (Swin's relative position bias table)."""
    table = getattr(owner, attr)
    index = torch.tensor(heads, dtype=torch.long, device=table.device)
    with torch.no_grad():
        setattr(owner, attr, nn.Parameter(table.index_select(1, index).clone(), requires_grad=table.requires_grad))


def _cut(view: Attention, drop: list[int]) -> None:
    """Remove head groups `drop` from one attention module: q/k/v rows, o's columns, per-head tables, and
    the head counts its code reads (core.attention.write_back)."""
    keep = [g for g in range(view.groups) if g not in drop]
    index = kept_indices(view, keep)
    tables = per_head_tables(view)
    if view.packed:
        _slice(view.projection("q"), index["qkv"], dim=0)
    else:
        for part in "qkv":
            _slice(view.projection(part), index[part], dim=0)
    _slice(view.projection("o"), index["o"], dim=1)
    for owner, attr in tables:
        _slice_table(owner, attr, group_heads(view, keep))
    write_back(view, len(keep) * view.group, len(keep))


def remove_heads(model: nn.Module, heads: dict[str, list[int]]) -> dict[str, int]:
    """Physically remove the listed head indices from each named attention module, in place; returns the
    heads removed per module named (0 for an empty list). Every request is validated before anything is
    cut: an unknown module, an index out of range, a duplicate index or all of a module's heads raise
    PruneLabError and leave the model untouched (heads_to_remove never asks for all of them)."""
    plan = {name: _validated(name, list(indices), model) for name, indices in heads.items()}
    views = attention_views(model)
    for name, drop in plan.items():
        if drop:
            _cut(views[name], drop)
    return {name: len(drop) for name, drop in plan.items()}

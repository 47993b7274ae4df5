"""Head pruning: physically remove whole attention heads, scored by gate gradients.

An attention module is "hand-written" when it has an int `num_heads` and Linear children q, k, v and an
output projection `proj` (sample_models.architectures.Attention, and SplitAttention below). Head h owns
rows [h*d, (h+1)*d) of q, k and v (d = width / num_heads, as the forward's reshape splits them) and the
same columns of proj's input. Removing a head slices those rows and columns out and lowers num_heads:
the other heads compute exactly what they did before, so removal equals zeroing that head's output.

nn.MultiheadAttention keeps q, k and v packed in one matrix; `convert_multihead_attention` first swaps
each one for an equivalent SplitAttention, whose heads can then be scored and removed like the others.

Importance follows Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?": a gate
g_h multiplies head h's output before the output projection, and the score is |dL/dg_h| at g = 1, the
first-order estimate of how much the loss moves when the head is masked. Higher = more important.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core.data import batches
from core.errors import PruneLabError
from core.importance.signals import Calibration

PROJECTIONS = ("q", "k", "v", "proj")


# ---------------------------------------------------------------------------------------------------
# Finding attention modules, and converting nn.MultiheadAttention into one


def is_attention(module: nn.Module) -> bool:
    """Whether module is a hand-written attention whose heads this module can score and remove."""
    heads = getattr(module, "num_heads", None)
    linears = all(isinstance(getattr(module, p, None), nn.Linear) for p in PROJECTIONS)
    return isinstance(heads, int) and not isinstance(heads, bool) and linears


def attention_modules(model: nn.Module) -> dict[str, int]:
    """Dotted name -> current head count of every hand-written attention module, in model order.

    nn.MultiheadAttention is not listed until `convert_multihead_attention` has replaced it.
    """
    return {name: m.num_heads for name, m in model.named_modules() if is_attention(m)}


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
    """

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
# Importance: gradients of per-head gates


def _gate_hook(gate: torch.Tensor):
    """A forward pre-hook for proj: its input (..., H*d) viewed as (..., H, d), scaled per head by gate."""

    def hook(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        heads = x.reshape(*x.shape[:-1], gate.numel(), -1) * gate.to(x.dtype).unsqueeze(-1)
        return (heads.reshape(x.shape), *args[1:])

    return hook


def _attention(model: nn.Module, name: str) -> nn.Module:
    """The attention module called name, or a PruneLabError listing the ones there are."""
    module = dict(model.named_modules()).get(name)
    if module is None or not is_attention(module):
        known = ", ".join(attention_modules(model)) or "none"
        raise PruneLabError(f"{name!r} is not an attention module of this model (attention modules: {known})")
    return module


@contextmanager
def head_gates(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block, head h of module `name` contributes gates[name][h] times its output (0 masks it,
    1 leaves it); the model classes are untouched (hooks on proj), and the hooks are gone afterwards."""
    handles = []
    try:
        for name, gate in gates.items():
            module = _attention(model, name)
            if gate.numel() != module.num_heads:
                raise PruneLabError(f"{name}: {gate.numel()} gates for {module.num_heads} heads")
            handles.append(module.proj.register_forward_pre_hook(_gate_hook(gate)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _unit_gates(model: nn.Module) -> dict[str, torch.Tensor]:
    """Gates of ones that require grad, one per head of every attention module, in its weights' dtype."""
    modules = dict(model.named_modules())
    gates = {}
    for name, heads in attention_modules(model).items():
        weight = modules[name].proj.weight
        gates[name] = torch.ones(heads, dtype=weight.dtype, device=weight.device, requires_grad=True)
    return gates


def head_importance(model: nn.Module, calib: Calibration) -> dict[str, torch.Tensor]:
    """Per attention module, one score per head: the mean over calibration batches of |dL/dg_h| at g = 1
    (L = the batch's mean cross-entropy on calib.y, model in eval mode). Gradients are taken for the
    gates only: the caller's parameters get no .grad, and mode and hooks are restored."""
    gates = _unit_gates(model)
    if not gates:
        return {}
    if len(calib.x) == 0:
        raise PruneLabError("head importance needs calibration data (calibration_samples >= 1)")
    device = next(iter(gates.values())).device
    totals = {name: torch.zeros_like(g, requires_grad=False) for name, g in gates.items()}
    n_batches, was_training = 0, model.training
    model.eval()
    try:
        with head_gates(model, gates), torch.enable_grad():
            for xb, yb in batches(calib.x, calib.y, calib.batch_size):
                loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
                grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
                for total, grad in zip(totals.values(), grads, strict=True):
                    if grad is not None:  # None: the module does not reach the loss
                        total += grad.abs()
                n_batches += 1
    finally:
        model.train(was_training)
    return {name: (total / n_batches).cpu() for name, total in totals.items()}


def scores_frame(scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Scores as a table: a row per module (in the dict's order), a column per head index, NaN where a
    module has fewer heads than the widest one."""
    width = max((len(s) for s in scores.values()), default=0)
    rows = [s.tolist() + [math.nan] * (width - len(s)) for s in scores.values()]
    return pd.DataFrame(rows, index=pd.Index(list(scores), name="module"),
                        columns=pd.RangeIndex(width, name="head"), dtype=float)


def head_grid(model: nn.Module, calib: Calibration) -> pd.DataFrame:
    """head_importance as a layers x heads table (modules in model order), for a heatmap."""
    return scores_frame(head_importance(model, calib))


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


def _head_widths(name: str, module: nn.Module) -> tuple[int, int]:
    """(query/key width, value width) of one head, after checking the projections agree with num_heads."""
    heads, q, k, v, proj = module.num_heads, module.q, module.k, module.v, module.proj
    if q.out_features != k.out_features or q.out_features % heads or v.out_features % heads:
        raise PruneLabError(f"{name}: q/k/v widths ({q.out_features}/{k.out_features}/{v.out_features}) "
                            f"do not split into {heads} equal heads")
    if proj.in_features != v.out_features:
        raise PruneLabError(f"{name}: proj takes {proj.in_features} inputs but v gives {v.out_features}")
    if any(hasattr(getattr(module, p), "weight_orig") for p in PROJECTIONS):
        raise PruneLabError(f"{name}: its projections carry unstructured pruning masks; remove heads first")
    return q.out_features // heads, v.out_features // heads


def _validated(name: str, indices: list[int], model: nn.Module) -> list[int]:
    """indices as a sorted list, after every check that remove_heads promises."""
    module = _attention(model, name)
    heads = module.num_heads
    _head_widths(name, module)
    bad = [h for h in indices if isinstance(h, bool) or not isinstance(h, Integral) or not 0 <= h < heads]
    if bad:
        raise PruneLabError(f"{name}: head indices {bad} are not in 0..{heads - 1}")
    indices = sorted(int(h) for h in indices)
    if len(set(indices)) != len(indices):
        raise PruneLabError(f"{name}: duplicate head indices in {indices}")
    if len(indices) >= heads:
        raise PruneLabError(f"{name}: cannot remove all {heads} heads; keep at least one")
    return indices


def _channels(keep: list[int], width: int, device: torch.device) -> torch.Tensor:
    """Indices of the rows (or columns) that the kept heads own, each head owning `width` of them."""
    return torch.tensor([h * width + i for h in keep for i in range(width)], dtype=torch.long, device=device)


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


def _cut(name: str, module: nn.Module, drop: list[int]) -> None:
    """Remove heads `drop` from one attention module: q/k/v rows, proj columns, num_heads."""
    qk_width, v_width = _head_widths(name, module)
    keep = [h for h in range(module.num_heads) if h not in drop]
    device = module.q.weight.device
    for proj, width in ((module.q, qk_width), (module.k, qk_width), (module.v, v_width)):
        _slice(proj, _channels(keep, width, device), dim=0)
    _slice(module.proj, _channels(keep, v_width, device), dim=1)
    module.num_heads = len(keep)


def remove_heads(model: nn.Module, heads: dict[str, list[int]]) -> dict[str, int]:
    """Physically remove the listed head indices from each named attention module, in place; returns the
    heads removed per module named (0 for an empty list). Every request is validated before anything is
    cut: an unknown module, an index out of range, a duplicate index or all of a module's heads raise
    PruneLabError and leave the model untouched (heads_to_remove never asks for all of them)."""
    plan = {name: _validated(name, list(indices), model) for name, indices in heads.items()}
    modules = dict(model.named_modules())
    for name, drop in plan.items():
        if drop:
            _cut(name, modules[name], drop)
    return {name: len(drop) for name, drop in plan.items()}

"""Attention modules of the families PruneLab knows, found from their attributes, never from class names.

An attention module computes per head h: softmax(q_h k_h^T * scale) v_h, then an output projection o over the
heads' outputs side by side. What PruneLab needs to score and remove heads is where q, k, v and o are and how the
rows of q/k/v and the columns of o split into heads. `Attention` says that for one module; `attention_views` finds
every one in a model. Families (first match wins):

- flat: four Linear children named (q, k, v, proj) — ours and core.prune.heads.SplitAttention —, (q_proj, k_proj,
  v_proj, o_proj) — Hugging Face ViT, Swin, Llama/Mistral/Qwen —, (q_proj, k_proj, v_proj, out_proj) — BART, OPT —,
  (q_lin, k_lin, v_lin, out_lin) — DistilBERT;
- nested: a child `self` or `attention` with query/key/value Linears, and o at `output.dense` — BERT, RoBERTa;
- packed: one Linear `c_attn` whose rows are [q | k | v] (split at `split_size`) and o at `c_proj` — GPT-2, once
  core.convert has turned its Conv1D layers into Linears.

Head counts come from the weights and the module's head width (`head_dim` / `attention_head_size`) when it has
one, else from its head count (`num_heads` / `num_attention_heads` / `n_heads`). With grouped-query attention (k
and v narrower than q) query head h reads key/value head h // (heads / kv_heads), so heads are removed by
key-value group: a group is a key/value head and the query heads that read it.

nn.MultiheadAttention keeps q, k and v packed inside itself; core.convert turns it into SplitAttention first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

FLAT = (("q", "k", "v", "proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), ("q_proj", "k_proj", "v_proj", "out_proj"),
        ("q_lin", "k_lin", "v_lin", "out_lin"))
NESTED_HOLDERS = ("self", "attention")  # BERT's BertAttention.self, older ViT's ViTAttention.attention
HEAD_COUNTS = ("num_heads", "num_attention_heads", "n_heads")  # attributes holding the query head count
HEAD_WIDTHS = ("head_dim", "attention_head_size")  # attributes holding one head's query/key width
PER_HEAD_TABLES = ("relative_position_bias_table",)  # parameters with one column per head (Swin)


def _int_attr(module: nn.Module, names: tuple[str, ...]) -> int | None:
    """The first of names that module has as a plain int (bools are not counts), or None."""
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _linear(module: nn.Module, path: str) -> nn.Linear | None:
    try:
        found = module.get_submodule(path)
    except AttributeError:
        return None
    return found if isinstance(found, nn.Linear) else None


@dataclass(frozen=True)
class Attention:
    """One recognised attention module: where its projections are and how they split into heads.

    paths are q, k, v, o relative to `module` (all three of q/k/v are `c_attn` when packed); `holder` is the
    submodule whose attributes hold the head count and width (BERT keeps them on `.self`, not on the unit)."""

    name: str
    module: nn.Module
    paths: tuple[str, str, str, str]
    heads: int  # query heads
    kv_heads: int  # key/value heads (== heads without grouped-query attention)
    head_dim: int  # query/key width of one head
    v_dim: int  # value width of one head (the output projection reads heads * v_dim inputs)
    holder: str = ""
    packed: bool = False

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def groups(self) -> int:
        """Units that head pruning removes: key/value groups (each head, without grouped-query attention)."""
        return self.kv_heads

    def projection(self, part: str) -> nn.Linear:
        """The Linear of "q", "k", "v" or "o" (the packed c_attn for any of q/k/v)."""
        return self.module.get_submodule(self.paths["qkvo".index(part)])

    def holder_module(self) -> nn.Module:
        return self.module.get_submodule(self.holder) if self.holder else self.module


def _widths(module: nn.Module, holder: nn.Module, q: int, k: int, v: int, o_in: int) -> tuple[int, int, int,
                                                                                                 int] | None:
    """(heads, kv_heads, head_dim, v_dim) for projections of widths q, k, v (outputs) and o_in (the output
    projection's inputs), or None when they do not split into whole heads."""
    width = _int_attr(holder, HEAD_WIDTHS)
    if width is None:
        count = _int_attr(holder, HEAD_COUNTS)
        if not count or q % count:
            return None
        width = q // count
    if width <= 0 or q % width or k % width:
        return None
    heads, kv_heads = q // width, k // width
    if kv_heads == 0 or heads % kv_heads or v % kv_heads or o_in != heads * (v // kv_heads):
        return None
    return heads, kv_heads, width, v // kv_heads


def _view(name: str, module: nn.Module, paths: tuple[str, str, str, str], holder: str = "",
          packed: bool = False) -> Attention | None:
    q, k, v, o = (_linear(module, p) for p in paths)
    if None in (q, k, v, o):
        return None
    keeper = module.get_submodule(holder) if holder else module
    if packed:
        split = _int_attr(module, ("split_size",))
        if split is None or q.out_features != 3 * split:
            return None
        found = _widths(module, keeper, split, split, split, o.in_features)
    else:
        found = _widths(module, keeper, q.out_features, k.out_features, v.out_features, o.in_features)
    return None if found is None else Attention(name, module, paths, *found, holder=holder, packed=packed)


def recognise(name: str, module: nn.Module) -> Attention | None:
    """The Attention view of module if it is an attention of a known family (see the module docstring)."""
    for paths in FLAT:
        if all(isinstance(getattr(module, p, None), nn.Linear) for p in paths):
            return _view(name, module, paths)
    for holder in NESTED_HOLDERS:
        inner = getattr(module, holder, None)
        if isinstance(inner, nn.Module) and all(isinstance(getattr(inner, p, None), nn.Linear)
                                                for p in ("query", "key", "value")):
            return _view(name, module, (f"{holder}.query", f"{holder}.key", f"{holder}.value", "output.dense"),
                         holder=holder)
    if isinstance(getattr(module, "c_attn", None), nn.Linear):
        return _view(name, module, ("c_attn", "c_attn", "c_attn", "c_proj"), packed=True)
    return None


def attention_views(model: nn.Module) -> dict[str, Attention]:
    """Dotted name -> Attention for every recognised attention module of model, in module order. A module
    inside a recognised one (BERT's `.self`) is part of it, not another attention."""
    found: dict[str, Attention] = {}
    for name, module in model.named_modules():
        if any(name.startswith(outer + ".") for outer in found):
            continue
        view = recognise(name, module)
        if view is not None:
            found[name] = view
    return found


def unrecognised(model: nn.Module) -> list[str]:
    """Modules that look like attention (class name says so, or nn.MultiheadAttention) but are not recognised
    and not inside a recognised one: named in messages so a user knows which part PruneLab could not read."""
    covered, out = list(attention_views(model)), []  # names whose modules (and sub-modules) are accounted for
    for name, module in model.named_modules():
        if any(name == c or name.startswith(c + ".") for c in covered):
            continue
        if isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower():
            covered.append(name)
            out.append(f"{name or '(model)'} ({type(module).__name__})")
    return out


# ---------------------------------------------------------------------------------------------------
# Which rows and columns a head group owns, and writing the new shape back


def group_heads(view: Attention, groups: list[int]) -> list[int]:
    """Query heads of the listed key/value groups, ascending."""
    return [g * view.group + i for g in groups for i in range(view.group)]


def _rows(heads: list[int], width: int, offset: int = 0) -> list[int]:
    return [offset + h * width + i for h in heads for i in range(width)]


def kept_indices(view: Attention, keep_groups: list[int]) -> dict[str, torch.Tensor]:
    """Row indices of q, k and v (or of the packed c_attn, under "qkv") and column indices of o that the kept
    key/value groups own."""
    q_heads = group_heads(view, keep_groups)
    device = view.projection("o").weight.device
    as_index = lambda rows: torch.tensor(rows, dtype=torch.long, device=device)  # noqa: E731
    q_rows = _rows(q_heads, view.head_dim)
    k_rows = _rows(keep_groups, view.head_dim)
    v_rows = _rows(keep_groups, view.v_dim)
    out = {"o": as_index(_rows(q_heads, view.v_dim))}
    if view.packed:
        split = view.heads * view.head_dim
        out["qkv"] = as_index(q_rows + [split + r for r in k_rows] + [2 * split + r for r in v_rows])
    else:
        out |= {"q": as_index(q_rows), "k": as_index(k_rows), "v": as_index(v_rows)}
    return out


def write_back(view: Attention, heads: int, kv_heads: int) -> None:
    """Set the head-count attributes the module's own forward (and a config rebuilt from it) reads, after its
    weights were cut to `heads` query heads and `kv_heads` key/value heads of unchanged width."""
    keeper = view.holder_module()
    for attr in HEAD_COUNTS:
        if _int_attr(keeper, (attr,)) is not None:
            setattr(keeper, attr, heads)
    if _int_attr(keeper, ("num_key_value_heads",)) is not None:
        keeper.num_key_value_heads = kv_heads
    if _int_attr(keeper, ("all_head_size",)) is not None:  # BERT reshapes its context to all_head_size
        keeper.all_head_size = heads * view.v_dim
    if view.packed:  # GPT-2 splits c_attn's output at split_size
        view.module.split_size = heads * view.head_dim


def per_head_tables(view: Attention) -> list[tuple[nn.Module, str]]:
    """(owner, parameter name) of the module's parameters with one column per head (Swin's relative position
    bias table), which lose the columns of removed heads."""
    found = []
    for module in view.module.modules():
        for attr in PER_HEAD_TABLES:
            table = getattr(module, attr, None)
            if isinstance(table, nn.Parameter) and table.dim() == 2 and table.shape[1] == view.heads:
                found.append((module, attr))
    return found


def group_weights(view: Attention) -> list[torch.Tensor]:
    """The weights each key/value group owns, one (groups, -1) tensor per projection: q, k and v rows (a
    group's rows are contiguous: its query heads are consecutive) and o's columns. Detached."""
    groups = view.groups
    if view.packed:
        split = view.heads * view.head_dim
        w = view.projection("q").weight.detach()
        q, k, v = w[:split], w[split:2 * split], w[2 * split:]
    else:
        q, k, v = (view.projection(p).weight.detach() for p in "qkv")
    cols = view.projection("o").weight.detach().T
    return [t.reshape(groups, -1) for t in (q, k, v, cols)]

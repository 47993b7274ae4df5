"""What a model is made of, found from its modules alone: the layers PruneLab prunes, its attention
modules and its residual blocks. One definition of each, read by channel grouping (core.graph), by
pruning (core.prune) and by scoring (core.importance); this module imports neither.

An attention module is "hand-written" when it has an int `num_heads` and Linear children q, k, v and an
output projection `proj` (sample_models.architectures.Attention, core.prune.heads.SplitAttention). Head h
owns rows [h*d, (h+1)*d) of q, k and v (d = width / num_heads) and the same columns of proj's input.
nn.MultiheadAttention keeps q, k and v packed: it is attention (has_attention, heads_and_width), but its
heads are listed only once core.prune.heads.convert_multihead_attention has split it.

A residual block computes out = x + f(x) with out shaped like x (is_residual, removable_blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from core.errors import PruneLabError

PRUNABLE = (nn.Conv2d, nn.Linear)
PROJECTIONS = ("q", "k", "v", "proj")  # an attention module's Linear children
RESIDUAL_FLAGS = ("use_residual", "use_res_connect", "has_skip")  # block attributes saying "adds its input"


# ---------------------------------------------------------------------------------------------------
# Attention


def is_attention(module: nn.Module) -> bool:
    """Whether module is a hand-written attention, whose heads can be scored and removed one by one."""
    heads = getattr(module, "num_heads", None)
    linears = all(isinstance(getattr(module, p, None), nn.Linear) for p in PROJECTIONS)
    return isinstance(heads, int) and not isinstance(heads, bool) and linears


def attention_modules(model: nn.Module) -> dict[str, int]:
    """Dotted name -> current head count of every hand-written attention module, in model order.

    nn.MultiheadAttention is not listed until `convert_multihead_attention` has replaced it.
    """
    return {name: m.num_heads for name, m in model.named_modules() if is_attention(m)}


def attention_module(model: nn.Module, name: str) -> nn.Module:
    """The attention module called name, or a PruneLabError listing the ones there are."""
    module = dict(model.named_modules()).get(name)
    if module is None or not is_attention(module):
        known = ", ".join(attention_modules(model)) or "none"
        raise PruneLabError(f"{name!r} is not an attention module of this model (attention modules: {known})")
    return module


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """q/k/v projections of every attention module (is_attention), mapped to its head count, so their
    width is cut equally in every head."""
    heads: dict[nn.Module, int] = {}
    for m in model.modules():
        if is_attention(m):
            heads.update({getattr(m, p): m.num_heads for p in PROJECTIONS[:3]})
    return heads


def query_projections(model: nn.Module) -> set[nn.Module]:
    """The q projections of every attention module (the ones whose scores scale by 1/sqrt(width))."""
    return {m.q for m in model.modules() if is_attention(m)}


def has_attention(model: nn.Module) -> bool:
    """Whether model has attention: a hand-written module (is_attention) or nn.MultiheadAttention."""
    return any(is_attention(m) or isinstance(m, nn.MultiheadAttention) for m in model.modules())


def heads_and_width(module: nn.Module) -> tuple[int, int] | None:
    """(heads, query width over all heads) of an attention module, hand-written (is_attention) or
    nn.MultiheadAttention; None for anything else."""
    if isinstance(module, nn.MultiheadAttention):
        return module.num_heads, module.embed_dim
    if is_attention(module):
        return module.num_heads, module.q.out_features
    return None


# ---------------------------------------------------------------------------------------------------
# Residual blocks


def is_residual(module: nn.Module) -> bool:
    """Whether module is a residual block by its structure (no forward needed). The rule, first match wins:

    - a `shortcut` attribute: residual only when it is nn.Identity (a conv shortcut means the block
      changes shape: ResNet BasicBlock/Bottleneck that downsample or widen);
    - a residual flag (RESIDUAL_FLAGS: `use_residual` of our MobileNetV2 InvertedResidual, torchvision's
      `use_res_connect`, timm's `has_skip`): residual only when it is True;
    - `attn` and `fc1` or `mlp` submodules: a transformer block, which adds both to its input.

    Attributes rather than class names, so look-alike blocks from other code are recognised as well; a
    leaf layer (no children) is never a block.
    """
    if not any(True for _ in module.children()):
        return False
    if hasattr(module, "shortcut"):
        return isinstance(module.shortcut, nn.Identity)
    if flag := next((f for f in RESIDUAL_FLAGS if hasattr(module, f)), None):
        return getattr(module, flag) is True
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


def record_calls(model: nn.Module, names: list[str], record: Callable[[str, Tensor, object], None]):
    """Forward hooks calling record(name, first input, output) for each named module; returns the handles."""
    modules = dict(model.named_modules())

    def hook_for(name: str):
        def hook(_module, args, output):
            if args and isinstance(args[0], Tensor):
                record(name, args[0], output)
        return hook

    return [modules[name].register_forward_hook(hook_for(name)) for name in names]


@torch.no_grad()
def forward_with_hooks(model: nn.Module, names: list[str], inputs: Iterable[Tensor],
                        record: Callable[[str, Tensor, object], None]) -> None:
    """Run model in eval mode over inputs with record hooked on the named modules; restore mode, drop hooks."""
    was_training = model.training
    handles = record_calls(model, names, record)
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

    forward_with_hooks(model, candidates, [example_input], record)
    return [name for name in candidates if seen.get(name, False)]  # never called: no evidence, not listed

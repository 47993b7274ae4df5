"""What a model is made of, found from its modules alone: the layers PruneLab prunes, its attention
modules and its residual blocks. One definition of each, read by channel grouping (core.graph), by
pruning (core.prune) and by scoring (core.importance); this module imports neither.

Attention modules are core.attention's families (ours, Hugging Face BERT/DistilBERT/ViT/Swin/GPT-2/Llama-style,
nn.MultiheadAttention once core.convert split it). A residual block computes out = x + f(x) with out shaped like
x (is_residual, removable_blocks); a transformer layer — an item of a ModuleList holding an attention module —
is one too, whatever its attributes are called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from core.attention import FLAT, Attention, attention_views, recognise
from core.errors import PruneLabError

PRUNABLE = (nn.Conv2d, nn.Linear)
RESIDUAL_FLAGS = ("use_residual", "use_res_connect", "has_skip")  # block attributes saying "adds its input"


# ---------------------------------------------------------------------------------------------------
# Attention (the families are core.attention's)


def is_attention(module: nn.Module) -> bool:
    """Whether module is an attention of a known family, whose heads can be scored and removed."""
    return recognise("", module) is not None


def attention_modules(model: nn.Module) -> dict[str, int]:
    """Dotted name -> units head pruning removes (heads; key/value groups with grouped-query attention) of every
    recognised attention module, in model order. nn.MultiheadAttention is listed once core.convert split it."""
    return {name: view.groups for name, view in attention_views(model).items()}


def attention_module(model: nn.Module, name: str) -> Attention:
    """The attention module called name, or a PruneLabError listing the ones there are."""
    view = attention_views(model).get(name)
    if view is None:
        known = ", ".join(attention_modules(model)) or "none"
        raise PruneLabError(f"{name!r} is not an attention module of this model (attention modules: {known})")
    return view


def _own(view: Attention) -> bool:
    """Ours (q/k/v/proj): its forward splits heads by count, so a channel cut may narrow every head."""
    return view.paths == FLAT[0]


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """q/k/v projections of our own attention modules, mapped to the head count, so a channel cut narrows every
    head equally (Torch-Pruning's num_heads). Other families fix one head width for q, k and v in their code:
    their projections' outputs are never a channel group (fixed_width_projections)."""
    heads: dict[nn.Module, int] = {}
    for view in attention_views(model).values():
        if _own(view):
            heads.update({view.projection(p): view.heads for p in "qkv"})
    return heads


def fixed_width_projections(model: nn.Module) -> list[nn.Module]:
    """q/k/v projections whose head width the module's code fixes (every family but ours): channel pruning
    leaves their outputs alone (a narrower head would be read as more, merged heads); head pruning cuts them."""
    return [view.projection(p) for view in attention_views(model).values() if not _own(view) for p in "qkv"]


def query_projections(model: nn.Module) -> set[nn.Module]:
    """The q projections of our own attention modules (the ones whose scores scale by 1/sqrt(width))."""
    return {view.projection("q") for view in attention_views(model).values() if _own(view)}


def has_attention(model: nn.Module) -> bool:
    """Whether model has attention: a recognised module (core.attention) or nn.MultiheadAttention."""
    return bool(attention_views(model)) or any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def heads_and_width(module: nn.Module) -> tuple[int, int] | None:
    """(heads, query width over all heads) of an attention module, recognised or nn.MultiheadAttention; None
    for anything else."""
    if isinstance(module, nn.MultiheadAttention):
        return module.num_heads, module.embed_dim
    view = recognise("", module)
    return None if view is None else (view.heads, view.heads * view.head_dim)


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


def transformer_layers(model: nn.Module) -> set[str]:
    """Items of a ModuleList that hold an attention module (recognised or nn.MultiheadAttention): the layers of
    BERT's encoder.layer, GPT-2's h, Llama's layers, nn.TransformerEncoder's layers. Every such layer adds its
    attention and feed-forward outputs to its input (pre- or post-norm); removable_blocks checks the shapes."""
    attention = set(attention_views(model)) | {n for n, m in model.named_modules()
                                                if isinstance(m, nn.MultiheadAttention)}
    found = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            for i, _ in enumerate(module):
                item = f"{name}.{i}" if name else str(i)
                if any(a == item or a.startswith(item + ".") for a in attention):
                    found.add(item)
    return found


def residual_blocks(model: nn.Module) -> list[str]:
    """Dotted names of the innermost residual blocks of model (is_residual, transformer_layers), in module
    order."""
    layers = transformer_layers(model)
    return _innermost(name for name, m in model.named_modules() if name and (is_residual(m) or name in layers))


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


def _first_item(model: nn.Module) -> str | None:
    """'name (Class)' of the first item of the first ModuleList in model, if any."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module):
            return f"{name}.0 ({type(module[0]).__name__})"
    return None


def why_no_blocks(model: nn.Module, example_input: Tensor) -> str:
    """Why removable_blocks finds nothing, naming a module: a residual candidate whose output is not a tensor
    of its input's shape (Swin's layers return a tuple), or a layer stack not recognised as residual."""
    candidates = residual_blocks(model)
    outputs: dict[str, str] = {}

    def record(name: str, x: Tensor, out: object) -> None:
        got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        outputs.setdefault(name, f"{got} for an input of shape {tuple(x.shape)}")

    if candidates:
        forward_with_hooks(model, candidates, [example_input], record)
        name = next((n for n in candidates if n in outputs), candidates[0])
        kind = type(model.get_submodule(name)).__name__
        return (f"residual blocks such as {name} ({kind}) return {outputs.get(name, 'nothing (never called)')}, "
                "so one cannot be replaced by its input")
    item = _first_item(model)
    where = f"; layers such as {item} are not recognised as residual" if item else ""
    return ("no residual block found (a `shortcut`, a residual flag such as use_res_connect, or a layer holding "
            f"attention){where}")

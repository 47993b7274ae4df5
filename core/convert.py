"""Other people's layers made into ones PruneLab prunes, same function, same parameter names.

- Hugging Face's `Conv1D` (GPT-2: a Linear whose weight is stored transposed, (in, out)) becomes nn.Linear with the
  weight transposed, so masks, channel groups and head cuts treat it like every other Linear. An export back to a
  Hugging Face folder (core.export_hf) transposes it again: state-dict names are unchanged.
- A Hugging Face model's key/value cache is switched off (use_cache = False): it serves generation only.
- nn.MultiheadAttention keeps q, k and v packed in one matrix and hides heads inside a fused kernel; it becomes
  core.prune.heads.SplitAttention, whose heads can be scored and removed.

Both are applied once to a user's model when it is loaded (core.loaders.user_spec.finish), so every method, the
estimate and the export see one model.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import PruneLabError
from core.prune.heads import convert_multihead_attention


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's transformers.pytorch_utils.Conv1D, by its shape of facts (nf outputs, weight (in, nf)),
    without importing transformers for models that do not use it."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and isinstance(getattr(module, "nf", None), int)
            and isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[1] == module.nf)


def _as_linear(conv: nn.Module) -> nn.Linear:
    inputs, outputs = conv.weight.shape
    bias = getattr(conv, "bias", None)
    linear = nn.Linear(inputs, outputs, bias=bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear.train(conv.training)


def convert_conv1d(model: nn.Module) -> int:
    """Replace every Conv1D in model by an equivalent nn.Linear, in place; returns how many."""
    found = [name for name, m in model.named_modules() if name and is_conv1d(m)]
    for name in found:
        model.set_submodule(name, _as_linear(model.get_submodule(name)))
    return len(found)


def make_prunable(model: nn.Module) -> list[str]:
    """Convert Conv1D layers and nn.MultiheadAttention modules of model in place (see the module docstring);
    returns one note per kind converted, for the load summary."""
    notes = []
    settings = getattr(model, "config", None)
    if getattr(settings, "use_cache", None):  # a key/value cache is for generation, which PruneLab never does;
        settings.use_cache = False  # its concatenations hide the heads' widths from Torch-Pruning's tracing
    if n := convert_conv1d(model):
        notes.append(f"{n} Conv1D layers read as Linear")
    try:
        if n := convert_multihead_attention(model):
            notes.append(f"{n} MultiheadAttention modules split into q/k/v projections")
    except PruneLabError as e:  # still a model: every method but head pruning works on it
        notes.append(f"MultiheadAttention left packed, so its heads cannot be removed ({e})")
    return notes

"""Model registry: builds a named model with its trained weights, example input and data.

For now the registry holds the bundled sample models; every entry yields the same ModelSpec, so the rest
of the engine never needs to know where a model came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from core.data import Split, load_split
from core.errors import PruneLabError


@dataclass(frozen=True)
class ModelSpec:
    """A loaded model and what is needed to prune, measure and fine-tune it.

    `model` may be shared (cached by the dashboard): never modify it; prune a deep copy.
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor  # batch of one, on the CPU
    split: Split
    summary: str
    fingerprint: str  # identifies the base weights; configs carry it so they are not replayed elsewhere


def available() -> list[str]:
    """Names that load() accepts."""
    from sample_models import SAMPLES

    return sorted(SAMPLES)


def fingerprint(model: nn.Module) -> str:
    """A short hash of every tensor's name, shape, dtype and bytes in the model's state dict."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def load(name: str) -> ModelSpec:
    """Build the named model and load its weights (weights-only: no pickled code runs)."""
    from sample_models import SAMPLES

    if name not in SAMPLES:
        raise PruneLabError(f"unknown model {name!r}; available: {', '.join(available())}")
    sample = SAMPLES[name]
    model = sample.build()
    path = sample.weights_path
    if not path.exists():
        raise PruneLabError(f"weights for {name} are missing ({path}); run: python -m sample_models.train {name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # corrupt or mismatched file: say which, do not crash the caller
        raise PruneLabError(f"cannot load weights {path}: {e}") from None
    model.eval()
    return ModelSpec(
        name=name,
        model=model,
        example_input=torch.zeros(1, *sample.input_shape),
        split=load_split(sample.dataset),
        summary=sample.summary,
        fingerprint=fingerprint(model),
    )

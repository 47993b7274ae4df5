"""ModelSpec — a loaded model with what pruning, measuring and fine-tuning need — and its fingerprint.

Its own module so that every loader (the registry in core.models, the user's models in core.user_models)
and every consumer (pruning, sweeps, runs) can name a spec without importing the loaders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.data import Split
from core.errors import PruneLabError


@dataclass(frozen=True)
class ModelSpec:
    """A loaded model and what is needed to prune, measure and fine-tune it.

    `model` may be shared (cached by the dashboard): never modify it; prune a deep copy.
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor  # batch of one, on the CPU
    split: Split | None  # None: no data (reference zoo) — no accuracy, fine-tuning or sensitivity sweeps
    summary: str
    fingerprint: str  # identifies the base weights; configs carry it so they are not replayed elsewhere
    metric: Callable[[nn.Module], dict[str, float]] | None = None  # task measure of a model without labels
    sample_inputs: torch.Tensor | None = None  # real inputs of a model without a data split (calibration)

    @property
    def has_data(self) -> bool:
        return self.split is not None


def require_data(spec: ModelSpec, what: str) -> Split:
    """spec's data, or a clear error saying that `what` needs data this model does not have."""
    if spec.split is None:
        raise PruneLabError(f"{what} needs labelled data, and {spec.name} has none (random weights for size and "
                            "latency work); accuracy is not available for it")
    if len(spec.split.train_x) == 0:  # a user model with evaluation data only (core.user_models)
        raise PruneLabError(f"{what} needs training data, and {spec.name} has none: give its build function a "
                            "train_loader (or its --data file x_train and y_train)")
    return spec.split


def fingerprint(model: nn.Module) -> str:
    """A short hash of every tensor's name, shape, dtype and bytes in the model's state dict."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]

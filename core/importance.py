"""Per-channel importance scores behind the dashboard's heatmap and the pruning order.

Magnitude criteria only for now (L1/L2 norms of weights). For channel pruning a channel's score is
Torch-Pruning's group magnitude: the norm over every coupled tensor slice that would go with it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from core.graph import PRUNABLE, channel_groups

P_NORM = {"l1": 1, "l2": 2}


def layer_channel_norms(model: nn.Module, criterion: str = "l1") -> dict[str, np.ndarray]:
    """For every Conv2d/Linear, the L1 or L2 norm of each output channel's weights."""
    p = P_NORM[criterion]
    return {
        name: m.weight.detach().flatten(1).norm(p=p, dim=1).numpy()
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE)
    }


def group_importance(model: nn.Module, example_input: torch.Tensor, criterion: str = "l1") -> dict[str, np.ndarray]:
    """For every coupled channel group (keyed by unit name), Torch-Pruning's group magnitude score of
    each channel. Works on a copy: tracing the graph needs gradients enabled on the weights."""
    import torch_pruning as tp

    work = copy.deepcopy(model)
    for param in work.parameters():
        param.requires_grad_(True)
    scorer = tp.importance.GroupMagnitudeImportance(p=P_NORM[criterion])
    pairs = channel_groups(work, example_input)  # traced with autograd on
    with torch.no_grad():
        return {unit.name: scorer(group).detach().numpy() for unit, group in pairs}


def importance(model: nn.Module, example_input: torch.Tensor, method: str, criterion: str = "l1") -> dict:
    """Scores for the units of `method`, each scaled so that its largest channel is 1."""
    raw = (layer_channel_norms(model, criterion) if method == "unstructured"
           else group_importance(model, example_input, criterion))
    return {name: s / s.max() if s.max() > 0 else s for name, s in raw.items()}

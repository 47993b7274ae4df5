"""The pruning methods as registered objects: REGISTRY maps a config's `method` name to its Method.

    get("channel").units(model, x)   the units (sliders) of a method
    names()                          every registered name, in the order the CLI and dashboard offer them
    register(method)                 add a method (a plugin or a test); unregister(name) removes it

PruneConfig validation, the CLI's choices, the estimate, the schedules and the dashboard all read this
registry, so adding a method is one file here plus one line below.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import Unit
from core.importance import Calibration, per_output_channel
from core.methods.base import Method, PlanOptions, nm_share
from core.methods.block import Block
from core.methods.channel import Channel
from core.methods.head import Head
from core.methods.layer import Layer
from core.methods.neuron import Neuron
from core.methods.nm import NM
from core.methods.unstructured import Unstructured

__all__ = ["REGISTRY", "Method", "PlanOptions", "get", "heatmap", "mask_names", "names", "nm_share", "register",
           "units", "unregister"]

# insertion order is the order offered to users; the registry holds one instance per method (stateless)
REGISTRY: dict[str, Method] = {m.name: m for m in (Unstructured(), NM(), Block(), Channel(), Neuron(), Head(),
                                                     Layer())}


def get(name: str) -> Method:
    """The registered method called `name`; unknown names are refused with the list of known ones."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise PruneLabError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names() -> list[str]:
    return list(REGISTRY)


def mask_names() -> list[str]:
    """The methods that mask weights inside dense tensors (the rest shrink the network)."""
    return [n for n, m in REGISTRY.items() if m.mask]


def repairs() -> list[str]:
    """Every post-training repair some method takes, in registry order (the CLI's --repair choices)."""
    return list(dict.fromkeys(r for m in REGISTRY.values() for r in m.repairs))


def register(method: Method) -> None:
    """Add a method under its name; a second method of the same name is refused."""
    if method.name in REGISTRY:
        raise PruneLabError(f"a method named {method.name!r} is already registered")
    REGISTRY[method.name] = method


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def units(model: nn.Module, example_input: torch.Tensor, method: str) -> list[Unit]:
    """The units (sliders) of `method` on model: get(method).units(model, example_input)."""
    return get(method).units(model, example_input)


def heatmap(model: nn.Module, example_input: torch.Tensor, method: str, criterion: str,
            calib: Calibration | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows for the importance heatmap, each scaled so its largest entry is 1: per layer for mask methods
    (weight scores summed per output channel), per unit otherwise (one score per channel or head)."""
    technique = get(method)
    raw = technique.scores(model, example_input, criterion, calib, seed)
    if technique.mask:
        raw = per_output_channel(raw)
    rows = {}
    for name, s in raw.items():
        s = s.numpy().astype(np.float64)
        top = np.nanmax(np.abs(s)) if s.size else 0.0
        rows[name] = s / top if top > 0 else s
    return rows

"""Preview: what a config would remove, without cutting anything (fast enough for every slider move).

A CostModel is built once per model and method from core.metrics' one FLOP count: each module's own
parameters, buffers and FLOPs, and which unit (slider) shrinks its output and input channels. A
convolution's or linear's parameters and FLOPs are proportional to (kept outputs x kept inputs), a norm
layer's to its kept channels, so the estimate for conv/linear/norm layers is exact. FLOPs of inline
attention matmuls (scores and the weighted sum of values) are proportional to heads x head width: they
scale with the unit that cuts the q projection's outputs (one coupled group with k, v and the output
projection's inputs, or the head unit), which is exact for hand-written attention. Mask methods
(unstructured, N:M, block) thin out weights without shrinking anything; heads shrink q/k/v outputs and
the output projection's inputs like a channel group; removed blocks take every module inside them away.
The tests check every method on every sample and zoo model against the count after cutting.

Weights that are already exactly zero (a random init's rare zeros, zero-initialised norm biases, an
earlier mask) count as zeros before anything is cut, as the measurement counts them: masks are assumed
to take them first (true of magnitude criteria), structural cuts to keep the kept share of them.
N:M groups cut short by a layer's width and blocks cut short by its border make mask estimates of
non-zeros (and sparse FLOPs) approximate by a few weights per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core import methods
from core.graph import Unit, kept_channels
from core.metrics import count_nonzero, flops_by_module


@dataclass(frozen=True)
class LayerCost:
    """One module's (or bare parameter's) own cost and the units whose ratios shrink it."""

    name: str
    weight: int  # elements of its `weight` (what unstructured pruning thins out)
    params: int  # all its own parameters, weight included
    buffers: int  # float buffer elements (BatchNorm running statistics)
    flops: int  # its own FLOPs at batch 1
    out_unit: str | None = None
    in_unit: str | None = None
    depthwise: bool = False  # one weight per channel: shrinks with its outputs only
    zero_weights: int = 0  # elements of its weight already exactly zero (masks applied)
    zero_params: int = 0  # elements of all its own parameters already exactly zero, weight included


@dataclass(frozen=True)
class CostModel:
    method: str
    units: tuple[Unit, ...]
    layers: tuple[LayerCost, ...]
    base_nonzero: int

    def owner(self, module: str) -> str | None:
        """The unit that cuts a module's outputs (for a container: the unit its inline matmuls follow)."""
        for lc in self.layers:
            if lc.name in (module, f"{module}:inline") and lc.out_unit:
                return lc.out_unit
        return None

    def unit_costs(self) -> dict[str, dict[str, int]]:
        """Per unit, the params and FLOPs of the layers whose outputs it cuts (what its pruning acts on)."""
        costs = {u.name: {"params": 0, "flops": 0} for u in self.units}
        for lc in self.layers:
            unit = methods.get(self.method).cost_unit(lc.name, lc.out_unit)
            if unit in costs:
                costs[unit]["params"] += lc.params
                costs[unit]["flops"] += lc.flops
        return costs

    def estimate(self, ratios: dict[str, float]) -> dict[str, int]:
        """params, nonzero_params, size_bytes, flops and sparse_flops if ratios were applied."""
        return methods.get(self.method).estimate(self, ratios)  # masked, shrunk or without_blocks

    def without_blocks(self, removed: set[str]) -> dict[str, int]:
        """Every module inside a removed block (and its inline FLOPs) is gone; the rest stays."""
        def gone(name: str) -> bool:
            return any(name == b or name.startswith((f"{b}.", f"{b}:")) for b in removed)

        kept = [lc for lc in self.layers if not gone(lc.name)]
        params, flops = sum(lc.params for lc in kept), sum(lc.flops for lc in kept)
        return {"params": params, "nonzero_params": params - sum(lc.zero_params for lc in kept),
                "size_bytes": 4 * (params + sum(lc.buffers for lc in kept)), "flops": flops,
                "sparse_flops": round(sum(_dense_share(lc) * lc.flops for lc in kept))}

    def masked(self, ratios: dict[str, float]) -> dict[str, int]:
        """Mask methods: the share of each layer's weights zeroed; every tensor keeps its dense size."""
        params = sum(lc.params for lc in self.layers)
        flops = sum(lc.flops for lc in self.layers)
        zeroed, sparse = 0, 0.0
        for lc in self.layers:
            cut = min(round(ratios.get(lc.name, 0.0) * lc.weight), max(lc.weight - 1, 0))  # as the masks clamp
            zeros = max(cut, lc.zero_weights)  # weights already zero are the first a magnitude mask takes
            zeroed += zeros - lc.zero_weights
            sparse += lc.flops * (1 - zeros / lc.weight) if lc.weight else lc.flops
        return {
            "params": params,
            "nonzero_params": self.base_nonzero - zeroed,
            "size_bytes": 4 * (params + sum(lc.buffers for lc in self.layers)),
            "flops": flops,
            "sparse_flops": round(sparse),
        }

    def shrunk(self, ratios: dict[str, float]) -> dict[str, int]:
        """Structural methods: each unit keeps kept_channels of its width; layers shrink with their units."""
        keep = {u.name: kept_channels(u, ratios.get(u.name, 0.0)) / u.size for u in self.units}
        params = zeros = flops = sparse = floats = 0.0
        for lc in self.layers:
            fo = keep.get(lc.out_unit, 1.0)
            fi = 1.0 if lc.depthwise else keep.get(lc.in_unit, 1.0)
            params += lc.weight * fo * fi + (lc.params - lc.weight) * fo
            zeros += lc.zero_weights * fo * fi + (lc.zero_params - lc.zero_weights) * fo
            floats += lc.buffers * fo
            flops += lc.flops * fo * fi
            sparse += lc.flops * fo * fi * _dense_share(lc)
        params = round(params)
        return {
            "params": params,
            "nonzero_params": params - round(zeros),
            "size_bytes": 4 * (params + round(floats)),
            "flops": round(flops),
            "sparse_flops": round(sparse),
        }


def _dense_share(lc: LayerCost) -> float:
    """Share of a layer's weight that is not zero (1 for layers without one): what its FLOPs count as
    sparse FLOPs, as core.metrics.sparse_flops counts them."""
    return 1 - lc.zero_weights / lc.weight if lc.weight else 1.0


LAYERS = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
          nn.Embedding)  # an embedding table narrows with the channel unit of its outputs (a language model)


def _unit_sides(found: list[Unit]) -> tuple[dict[str, str], dict[str, str]]:
    """Which unit shrinks each member's outputs, and which its inputs."""
    outs, ins = {}, {}
    for u in found:
        for m in u.members:
            (outs if m.side == "out" else ins).setdefault(m.name, u.name)
    return outs, ins


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's own parameters by name, masked ones (torch.nn.utils.prune's weight_orig) as their
    effective tensor under their plain name."""
    own = {}
    for pn, p in module.named_parameters(recurse=False):
        plain = pn.removesuffix("_orig")
        own[plain] = getattr(module, plain) if plain != pn else p
    return own


def _zeros(t: torch.Tensor) -> int:
    return t.numel() - int(torch.count_nonzero(t.detach()))


def _layer_cost(name: str, module: nn.Module, flops: int, outs: dict, ins: dict) -> LayerCost:
    own = _own_tensors(module)
    weight = own["weight"].numel() if isinstance(module, (nn.Conv2d, nn.Linear)) else 0
    buffers = sum(b.numel() for b in module.buffers(recurse=False) if b.is_floating_point())
    depthwise = isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels
    return LayerCost(name, weight, sum(p.numel() for p in own.values()), buffers, flops,
                     outs.get(name), ins.get(name), depthwise, zero_weights=_zeros(own["weight"]) if weight else 0,
                     zero_params=sum(_zeros(p) for p in own.values()))


def _container_costs(name: str, module: nn.Module, flops: int, outs: dict) -> list[LayerCost]:
    """A container's bare parameters (a ViT's cls token) and inline FLOPs (attention matmuls).

    Inline matmul FLOPs shrink with the first child projection whose outputs a unit cuts (q in attention).
    """
    costs = [LayerCost(f"{name}.{pn}" if name else pn, 0, p.numel(), 0, 0, outs.get(f"{name}.{pn}" if name else pn),
                       zero_params=_zeros(p))
             for pn, p in _own_tensors(module).items()]
    if flops:
        child = next((outs[f"{name}.{c}" if name else c] for c, _ in module.named_children()
                      if (f"{name}.{c}" if name else c) in outs), None)
        costs.append(LayerCost(f"{name}:inline", 0, 0, 0, flops, child))
    return costs


def build_cost_model(model: nn.Module, example_input: torch.Tensor, method: str) -> CostModel:
    """Measure model once (FLOPs per module, sizes, channel coupling) for fast estimates later."""
    flops = flops_by_module(model, example_input)
    found = methods.get(method).units(model, example_input)
    outs, ins = _unit_sides(found)
    layers: list[LayerCost] = []
    for name, module in model.named_modules():
        if isinstance(module, LAYERS):
            layers.append(_layer_cost(name, module, flops.get(name, 0), outs, ins))
        else:
            layers.extend(_container_costs(name, module, flops.get(name, 0), outs))
    return CostModel(method, tuple(found), tuple(layers), count_nonzero(model))

"""Model measurements: parameters, non-zero parameters, fp32 size and FLOPs (dense and per layer).

FLOPs come from torch's FlopCounterMode at batch 1 (a multiply-add counts as 2 FLOPs), with two of its
blind spots fixed: nn.MultiheadAttention's inference fast path (taken under no_grad) hides all of its
work, so counting runs with autograd on; and the CPU kernel of scaled_dot_product_attention (what
MultiheadAttention uses with need_weights=False, and many hand-written models call) has no formula,
so it gets torch's own sdpa formula (2·B·H·L·S·(E + Ev)).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Trainable tensors' elements (a masked weight counts once, as its weight_orig)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not zero, with pruning masks applied."""
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):  # torch.nn.utils.prune: the effective tensor is orig * mask
                p = getattr(module, name[: -len("_orig")])
            total += int(torch.count_nonzero(p.detach()))
    return total


def size_bytes(model: nn.Module) -> int:
    """Bytes of a dense fp32 state dict: every float parameter and buffer (masks excluded)."""
    tensors = [p for p in model.parameters()] + [
        b for n, b in model.named_buffers() if b.is_floating_point() and not n.endswith("_mask")
    ]
    return sum(t.numel() * 4 for t in tensors if t.is_floating_point())


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


_MISSING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def flops_by_module(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """FLOPs each module performs itself (excluding its children), keyed by module name; "" is the root.

    Self FLOPs of a parent are the matmuls written inline in its forward (e.g. attention scores).
    """
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_MISSING)
    with torch.enable_grad(), counter:  # autograd on: keeps MultiheadAttention off its opaque fast path
        model(example_input)
    totals: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = key.split(".", 1)[1] if "." in key else ""  # keys start with the root's class name
        totals[name] = sum(ops.values())
    self_flops = {}
    for name, module in model.named_modules():
        children = sum(totals.get(f"{name}.{c}" if name else c, 0) for c, _ in module.named_children())
        own = totals.get(name, 0) - children
        if own:
            self_flops[name] = own
    return self_flops


def total_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Dense FLOPs of one forward pass at batch 1."""
    return sum(flops_by_module(model, example_input).values())


def weight_density(module: nn.Module) -> float:
    """Fraction of a layer's weight entries that are non-zero (1.0 for layers without weight)."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.numel() == 0:
        return 1.0
    return float(torch.count_nonzero(w.detach())) / w.numel()


def sparse_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs if multiplications by zero weights were skipped: each layer's FLOPs times its weight
    density. An upper bound on what sparse kernels could save; dense runtimes save nothing."""
    modules = dict(model.named_modules())
    return round(sum(f * weight_density(modules[n]) for n, f in flops_by_module(model, example_input).items()))


def static_metrics(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Everything measurable without data or a runtime."""
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero(model),
        "size_bytes": size_bytes(model),
        "flops": total_flops(model, example_input),
        "sparse_flops": sparse_flops(model, example_input),
    }


def layer_summary(model: nn.Module, example_input: torch.Tensor) -> list[dict]:
    """One row per module that holds parameters or does FLOPs: name, type, weight shape, params, FLOPs."""
    flops = flops_by_module(model, example_input)
    total = sum(flops.values()) or 1
    rows = []
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not own and not flops.get(name):
            continue
        weight = own.get("weight")
        rows.append({
            "layer": name or "(model)",
            "type": type(module).__name__,
            "weight shape": "x".join(map(str, weight.shape)) if weight is not None else "",
            "params": sum(p.numel() for p in own.values()),
            "flops": flops.get(name, 0),
            "flops share %": round(100 * flops.get(name, 0) / total, 2),
        })
    return rows

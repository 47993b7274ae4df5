"""Model measurements: parameters, non-zero parameters, fp32 size and FLOPs (dense and per layer).

`flops_by_module` is the one FLOP count: the Model page, the layer table, the Tune estimate
(core.estimate), the CLI, Results and the store all read it. It counts with torch's FlopCounterMode at
batch 1 (a multiply-add counts as 2 FLOPs; convolutions and matrix products, including attention's
scores and weighted sums with whatever head count and head width the model has now; biases, norms,
softmax and activations are not counted), with its blind spots fixed here, once:

- Module attribution. FlopCounterMode names modules through torch's ModuleTracker, whose forward hooks
  are process-wide: a forward pass in any other thread (the dashboard's job thread, another session)
  enters and leaves module names in the counting thread's tracker, so per-module figures (and their
  sum) came out wrong: a negative "(model)" row, a baseline of 2.93 M instead of 4.85 M. Here the
  tracker is switched off, FlopCounterMode only keeps the running total (its dispatch mode is
  thread-local), and hooks on this model's own modules, ignoring other threads, charge each stretch of
  that total to the innermost module running: self FLOPs by construction, never negative.
- Fused attention kernels. nn.MultiheadAttention and nn.TransformerEncoder(Layer) take an opaque
  inference fast path (no FLOPs seen at all) unless autograd could need them: counting runs with
  autograd on, outside inference mode, and their query is made to require grad (frozen weights
  otherwise still take the fast path).
- scaled_dot_product_attention's CPU kernel (what MultiheadAttention uses with need_weights=False, and
  many hand-written models call) has no formula: it gets torch's own sdpa formula (2·B·H·L·S·(E + Ev)).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from functools import partial

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
# modules with a fused inference kernel that FlopCounterMode cannot see into
_FUSED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


class _NoTracker:
    """Stands in for FlopCounterMode's ModuleTracker (process-wide hooks): every FLOP goes to "Global"."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _NoTracker:
        return self

    def __exit__(self, *args) -> None:
        return None


def _needs_grad(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Float tensors among a fused module's arguments, as copies that require grad (the same copy for the
    same tensor: self-attention passes query, key and value as one tensor), so it takes the slow path."""
    seen: dict[int, torch.Tensor] = {}

    def swap(t):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.requires_grad:
            return t
        return seen.setdefault(id(t), t.detach().requires_grad_())

    return tuple(swap(a) for a in args), {k: swap(v) for k, v in kwargs.items()}


class _SelfFlops:
    """Charges the FLOPs counted so far to the innermost module of `model` running in this thread.

    Forward hooks on the model's own modules keep a stack of names; at every entry and exit the FLOPs
    counted since the previous one are added to the module on top. Calls from other threads (a shared
    model run elsewhere at the same time) are ignored. A module reachable under two names counts under
    its first, as in named_modules().
    """

    def __init__(self, model: nn.Module, counter: FlopCounterMode) -> None:
        self.counter, self.thread = counter, threading.get_ident()
        self.own: dict[str, int] = defaultdict(int)
        self.stack, self.seen = [""], 0
        self.handles = []
        for name, module in model.named_modules():
            self.handles += [
                module.register_forward_pre_hook(partial(self._enter, name), with_kwargs=True),
                module.register_forward_hook(partial(self._leave, name), always_call=True),
            ]

    def _charge(self) -> None:
        now = self.counter.get_total_flops()
        self.own[self.stack[-1]] += now - self.seen
        self.seen = now

    def _enter(self, name: str, module: nn.Module, args: tuple, kwargs: dict):
        if threading.get_ident() != self.thread:
            return None
        self._charge()
        self.stack.append(name)
        return _needs_grad(args, kwargs) if isinstance(module, _FUSED) else None

    def _leave(self, name: str, module: nn.Module, args: tuple, output) -> None:
        if threading.get_ident() == self.thread:
            self._charge()
            self.stack.pop()

    def close(self) -> dict[str, int]:
        """Remove the hooks; the FLOPs each module performed itself, modules with none left out."""
        for handle in self.handles:
            handle.remove()
        self._charge()  # anything after the last hook (nothing, when the root module ran the forward)
        return {name: flops for name, flops in self.own.items() if flops}


def flops_by_module(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """The one FLOP count: FLOPs each module performs itself (excluding its children), keyed by module
    name, "" for the root; modules doing none are left out. Batch 1 when example_input has one sample.

    Self FLOPs of a parent are the matmuls written inline in its forward (e.g. attention scores). Safe to
    call while other threads run this or any other model.
    """
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_MISSING)
    counter.mod_tracker = _NoTracker()  # see the module docstring: its hooks see every thread
    owners = _SelfFlops(model, counter)
    try:
        # autograd on and no inference mode: keeps MultiheadAttention off its opaque fast path
        with torch.inference_mode(False), torch.enable_grad(), counter:
            model(example_input.clone())  # a clone: an input made in inference mode cannot enter autograd
    finally:
        flops = owners.close()
    return flops


def total_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Dense FLOPs of one forward pass (the sum of flops_by_module)."""
    return sum(flops_by_module(model, example_input).values())


def weight_density(module: nn.Module) -> float:
    """Fraction of a layer's weight entries that are non-zero (1.0 for layers without weight)."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.numel() == 0:
        return 1.0
    return float(torch.count_nonzero(w.detach())) / w.numel()


def sparse_flops(model: nn.Module, example_input: torch.Tensor,
                 flops: dict[str, int] | None = None) -> int:
    """FLOPs if multiplications by zero weights were skipped: each module's own FLOPs times its weight
    density (masked weights read with their masks applied; inline matmuls and weightless modules count in
    full). An upper bound on what sparse kernels could save; dense runtimes save nothing. `flops`: an
    already made flops_by_module count of the same model, to count once."""
    modules = dict(model.named_modules())
    flops = flops_by_module(model, example_input) if flops is None else flops
    return round(sum(f * weight_density(modules[n]) for n, f in flops.items()))


def static_metrics(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Everything measurable without data or a runtime; dense and sparse FLOPs from one count."""
    flops = flops_by_module(model, example_input)
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero(model),
        "size_bytes": size_bytes(model),
        "flops": sum(flops.values()),
        "sparse_flops": sparse_flops(model, example_input, flops),
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

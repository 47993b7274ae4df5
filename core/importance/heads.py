"""Head importance: one score per head of every attention module (core.attention), per key/value group with
grouped-query attention (a group is removed whole, so it is scored whole).

taylor follows Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?": a gate g_h
multiplies head h's output before the output projection, and the score is |dL/dg_h| at g = 1, the
first-order estimate of how much the loss moves when the head is masked. l1/l2 are the norms of the
head's q/k/v rows and output-projection columns; random is the baseline. Higher = more important.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn

from core.attention import attention_views, group_weights
from core.data import batches
from core.errors import PruneLabError
from core.evaluate import task_loss
from core.importance.criteria import NotApplicable
from core.importance.signals import Calibration
from core.structure import attention_module

HEAD_CRITERIA = ("taylor", "l1", "l2", "random")  # gate gradient (Michel et al. 2019), weight norms, random


def _gate_hook(gate: torch.Tensor):
    """A forward pre-hook for the output projection: its input (..., G*w) viewed as (..., G, w), scaled per
    head group by gate (a group's query heads are consecutive, so its columns are contiguous)."""

    def hook(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        heads = x.reshape(*x.shape[:-1], gate.numel(), -1) * gate.to(x.dtype).unsqueeze(-1)
        return (heads.reshape(x.shape), *args[1:])

    return hook


@contextmanager
def head_gates(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block, head h of module `name` contributes gates[name][h] times its output (0 masks it,
    1 leaves it); the model classes are untouched (hooks on proj), and the hooks are gone afterwards."""
    handles = []
    try:
        for name, gate in gates.items():
            view = attention_module(model, name)
            if gate.numel() != view.groups:
                raise PruneLabError(f"{name}: {gate.numel()} gates for {view.groups} heads")
            handles.append(view.projection("o").register_forward_pre_hook(_gate_hook(gate)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _unit_gates(model: nn.Module) -> dict[str, torch.Tensor]:
    """Gates of ones that require grad, one per head (key/value group) of every attention module, in its
    weights' dtype."""
    gates = {}
    for name, view in attention_views(model).items():
        weight = view.projection("o").weight
        gates[name] = torch.ones(view.groups, dtype=weight.dtype, device=weight.device, requires_grad=True)
    return gates


def head_importance(model: nn.Module, calib: Calibration) -> dict[str, torch.Tensor]:
    """Per attention module, one score per head: the mean over calibration batches of |dL/dg_h| at g = 1
    (L = the batch's mean cross-entropy on calib.y, model in eval mode). Gradients are taken for the
    gates only: the caller's parameters get no .grad, and mode and hooks are restored."""
    gates = _unit_gates(model)
    if not gates:
        return {}
    if len(calib.x) == 0:
        raise PruneLabError("head importance needs calibration data (calibration_samples >= 1)")
    device = next(iter(gates.values())).device
    totals = {name: torch.zeros_like(g, requires_grad=False) for name, g in gates.items()}
    n_batches, was_training = 0, model.training
    model.eval()
    try:
        with head_gates(model, gates), torch.enable_grad():
            for xb, yb in batches(calib.x, calib.y, calib.batch_size):
                loss = task_loss(model(xb.to(device)), yb.to(device))  # an LM: next-token cross-entropy
                grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
                for total, grad in zip(totals.values(), grads, strict=True):
                    if grad is not None:  # None: the module does not reach the loss
                        total += grad.abs()
                n_batches += 1
    finally:
        model.train(was_training)
    return {name: (total / n_batches).cpu() for name, total in totals.items()}


def scores_frame(scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Scores as a table: a row per module (in the dict's order), a column per head index, NaN where a
    module has fewer heads than the widest one."""
    width = max((len(s) for s in scores.values()), default=0)
    rows = [s.tolist() + [math.nan] * (width - len(s)) for s in scores.values()]
    return pd.DataFrame(rows, index=pd.Index(list(scores), name="module"),
                        columns=pd.RangeIndex(width, name="head"), dtype=float)


def head_grid(model: nn.Module, calib: Calibration) -> pd.DataFrame:
    """head_importance as a layers x heads table (modules in model order), for a heatmap."""
    return scores_frame(head_importance(model, calib))


def head_scores(model: nn.Module, criterion: str, calib: Calibration, seed: int) -> dict[str, torch.Tensor]:
    """One score per head of every attention module: the loss gradient of a gate on the head's output
    (taylor; Michel et al. 2019), the L1/L2 norm of the head's q/k/v rows and output-projection columns,
    or seeded random numbers."""
    if criterion not in HEAD_CRITERIA:
        raise NotApplicable(f"heads are ranked by {', '.join(HEAD_CRITERIA)}; {criterion!r} scores weights or "
                            "channels")
    if criterion == "taylor":
        return head_importance(model, calib)
    out = {}
    gen = torch.Generator().manual_seed(seed)
    for name, view in attention_views(model).items():
        if criterion == "random":
            out[name] = torch.rand(view.groups, generator=gen)
            continue
        out[name] = torch.cat(group_weights(view), dim=1).norm(p=1 if criterion == "l1" else 2, dim=1)
    return out

"""Repair after a structural cut (channels, neurons, heads): the layers whose inputs were cut are refitted so their
outputs on the calibration data stay as close as they can to the unpruned model's.

A layer whose input width shrank (the consumer of cut channels: the next convolution, an FFN's second Linear,
attention's output projection) is visited in forward order. The calibration inputs run through the unpruned model
and through the cut one (already refitted up to this layer) side by side; for this layer only, A = its inputs in
the unpruned model and B = its inputs in the cut one (rows: examples x positions; a convolution's unfolded
patches; of a padded text batch, its real tokens only: core.token_positions). Then, with W, b its unpruned weight
and bias:

- "lstsq" (least squares, as in He et al.'s channel-pruning reconstruction): the new weight and bias minimise
  ||B W'^T + b' - (A W^T + b)||^2 + lambda ||(W', b') - (W0, b0)||^2, (W0, b0) the cut layer's own, in closed form
  from B^T B, B^T A and the column sums — they absorb both the removed inputs' contribution and the drift of the
  kept ones, and with little or unlike calibration data stay near the cut weights rather than near zero;
- "bias" (FLAP's compensation, An et al. 2024): the weight stays cut, the bias moves by W mean(A) - W' mean(B), so
  each output keeps its mean over the calibration data. A layer without a bias gets none added: where a BatchNorm
  follows, its statistics re-estimated after the cut do the same.

Memory: one layer's B^T B (inputs^2), B^T A (inputs x unpruned inputs) and one batch of its inputs at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core.data import batches
from core.protocols import RepairProgress
from core.repair import DAMP
from core.repair_layers import forward_order, patches, repairable
from core.token_positions import real_tokens

STRUCTURED_REPAIRS = ("lstsq", "bias")  # what a structural method's --repair may be


def consumers(original: nn.Module, cut: nn.Module) -> list[str]:
    """Layers of `cut` whose inputs per output are fewer than the same-named layer's in `original`."""
    before = dict(original.named_modules())
    return [n for n, m in cut.named_modules() if repairable(m) and n in before and isinstance(before[n], type(m))
            and before[n].weight.shape[1:] != m.weight.shape[1:]]


def refit_consumers(original: nn.Module, cut: nn.Module, example_input: torch.Tensor, calib_x: torch.Tensor,
                    how: str, lost: dict[str, list[int]] | None = None, progress: RepairProgress | None = None
                    ) -> list[str]:
    """Refit every consumer layer of `cut` in place ("lstsq" or "bias", see the module docstring); `lost` names
    the output indices a layer lost in the cut (it is fitted to the unpruned layer's others). Returns the layers
    refitted, in the order they were."""
    names = forward_order(cut, example_input, consumers(original, cut))
    before, after = dict(original.named_modules()), dict(cut.named_modules())
    original.eval()
    for done, name in enumerate(names):
        if progress is not None:
            progress(done, len(names), name)
        old = _kept_outputs(before[name], (lost or {}).get(name, []))
        stats = _paired(original, cut, before[name], after[name], calib_x)
        (_least_squares if how == "lstsq" else _bias)(old, after[name], stats)
    if progress is not None:
        progress(len(names), len(names), "")
    return names


def _kept_outputs(layer: nn.Module, lost: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight as outputs x inputs, bias) of the unpruned layer's outputs the cut kept, in float64."""
    keep = [i for i in range(layer.weight.shape[0]) if i not in set(lost)]
    weight = layer.weight.detach().reshape(layer.weight.shape[0], -1)[keep].double()
    return weight, None if layer.bias is None else layer.bias.detach()[keep].double()


class _Stats:
    """Sums over the calibration rows of one layer's inputs: A (unpruned model), B (cut model)."""

    def __init__(self) -> None:
        self.bb: torch.Tensor | float = 0.0  # B^T B
        self.ba: torch.Tensor | float = 0.0  # B^T A
        self.sum_a: torch.Tensor | float = 0.0
        self.sum_b: torch.Tensor | float = 0.0
        self.rows = 0


def _paired(original: nn.Module, cut: nn.Module, old: nn.Module, new: nn.Module, x: torch.Tensor,
            batch_size: int = 32) -> _Stats:
    """The layer's input sums, batch by batch: both models run on the same calibration examples."""
    stats, seen = _Stats(), {}  # seen["real"]: this batch's real-token positions (None: every position counts)

    def keep(key: str) -> Callable[[nn.Module, tuple], None]:
        return lambda m, a: seen.__setitem__(key, patches(m, a[0].detach(), seen["real"]))

    hooks = [old.register_forward_pre_hook(keep("a")), new.register_forward_pre_hook(keep("b"))]
    try:
        with torch.no_grad():
            cut.eval()
            for xb, _ in batches(x, torch.zeros(len(x)), batch_size):
                seen["real"] = real_tokens(original, xb)
                original(xb)
                cut(xb)
                a, b = seen["a"].double(), seen["b"].double()
                stats.bb, stats.ba = stats.bb + b.T @ b, stats.ba + b.T @ a
                stats.sum_a, stats.sum_b = stats.sum_a + a.sum(0), stats.sum_b + b.sum(0)
                stats.rows += len(a)
    finally:
        for h in hooks:
            h.remove()
    return stats


def _least_squares(old: tuple[torch.Tensor, torch.Tensor | None], new: nn.Module, s: _Stats) -> None:
    """new's weight (and bias, if it has one) := the dampened least-squares fit of old's outputs (module docstring)."""
    w_old, b_old = old
    b_old = b_old if b_old is not None else torch.zeros(len(w_old), dtype=torch.float64)
    gram, cross = s.bb, s.ba @ w_old.T + torch.outer(s.sum_b, b_old)  # B^T B; B^T (A W^T + b)
    if new.bias is not None:  # a constant input of 1 carries the bias
        n = s.rows
        gram = torch.cat([torch.cat([gram, s.sum_b[:, None]], 1),
                          torch.cat([s.sum_b, torch.tensor([float(n)], dtype=torch.float64)])[None]], 0)
        target_sum = s.sum_a @ w_old.T + n * b_old  # 1^T (A W^T + b)
        cross = torch.cat([cross, target_sum[None]], 0)
    # the ridge pulls toward the cut weights, not toward zero: with little or unlike data the fit stays near them
    start = new.weight.detach().reshape(new.weight.shape[0], -1).double().T
    if new.bias is not None:
        start = torch.cat([start, new.bias.detach().double()[None]], 0)
    damp = DAMP * torch.diagonal(gram).mean()
    solution = torch.linalg.solve(gram + damp * torch.eye(len(gram), dtype=torch.float64), cross + damp * start)
    with torch.no_grad():
        width = new.weight[0].numel()
        new.weight.copy_(solution[:width].T.reshape(new.weight.shape))
        if new.bias is not None:
            new.bias.copy_(solution[width])


def _bias(old: tuple[torch.Tensor, torch.Tensor | None], new: nn.Module, s: _Stats) -> None:
    """new's bias += W mean(A) - W' mean(B): each output keeps its mean (no bias: left alone)."""
    if new.bias is None:
        return
    w_old = old[0]
    w_new = new.weight.detach().reshape(new.weight.shape[0], -1).double()
    shift = w_old @ (s.sum_a / s.rows) - w_new @ (s.sum_b / s.rows)
    with torch.no_grad():
        new.bias.add_(shift.to(new.bias.dtype))

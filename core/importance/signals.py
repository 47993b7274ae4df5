"""Data-dependent signals the criteria score with: loss gradients, diagonal Fisher information, and
input-activation statistics of every Conv2d/Linear, each computed once per model on calibration data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from core.data import batches
from core.evaluate import task_loss
from core.structure import PRUNABLE
from core.token_positions import real_rows, real_tokens


@dataclass(frozen=True)
class Calibration:
    """The fixed, seeded subset of training data that gradient and activation criteria look at."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int = 64


class Signals:
    """Lazily computed statistics of one model on one calibration set (the model is not modified,
    except for .grad fields, which callers own: they pass a working copy)."""

    def __init__(self, model: nn.Module, calib: Calibration | None) -> None:
        self.model = model
        self.calib = calib

    def _require_data(self, what: str) -> Calibration:
        if self.calib is None or len(self.calib.x) == 0:
            raise ValueError(f"{what} needs calibration data")
        return self.calib

    def _batch_gradients(self):
        """Yield, per calibration batch, {param: gradient of that batch's mean loss} (eval mode)."""
        calib = self._require_data("a gradient criterion")
        params = [p for p in self.model.parameters()]
        was_training = self.model.training
        self.model.eval()  # BatchNorm uses its running statistics, as at inference
        for xb, yb in batches(calib.x, calib.y, calib.batch_size):
            with torch.enable_grad():
                loss = task_loss(self.model(xb), yb)  # an LM: mean next-token cross-entropy
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            yield len(xb), {p: g for p, g in zip(params, grads, strict=True) if g is not None}
        self.model.train(was_training)

    @cached_property
    def gradient(self) -> dict[nn.Parameter, torch.Tensor]:
        """dL/dw of the mean loss over the whole calibration set."""
        total, n = {}, 0
        for size, grads in self._batch_gradients():
            n += size
            for p, g in grads.items():
                total[p] = total.get(p, 0) + g * size
        return {p: g / n for p, g in total.items()}

    @cached_property
    def fisher(self) -> dict[nn.Parameter, torch.Tensor]:
        """Diagonal empirical Fisher: the squared batch-loss gradient, averaged over calibration batches."""
        total, n = {}, 0
        for _, grads in self._batch_gradients():
            n += 1
            for p, g in grads.items():
                total[p] = total.get(p, 0) + g.pow(2)
        return {p: f / n for p, f in total.items()}

    @cached_property
    def activations(self) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """For every Conv2d/Linear: (mean |input| per input channel, fraction of zero inputs per input
        channel — APoZ, L2 norm of each input channel — Wanda's ||X_j||), over all calibration images and
        positions (of a padded text batch, its real tokens only: core.token_positions)."""
        calib = self._require_data("an activation criterion")
        sums: dict[nn.Module, list] = {}
        real: list[torch.Tensor | None] = [None]  # this batch's real-token positions (None: every position counts)

        def hook(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            x = inputs[0].detach()
            x = x.transpose(0, 1).flatten(1) if x.dim() == 4 else real_rows(x, real[0]).T  # (channels, n)
            acc = sums.setdefault(module, [0.0, 0.0, 0.0, 0])
            acc[0] = acc[0] + x.abs().sum(1)
            acc[1] = acc[1] + (x == 0).sum(1)
            acc[2] = acc[2] + x.double().pow(2).sum(1)  # float64: sums of squares over many tokens
            acc[3] += x.shape[1]

        handles = [m.register_forward_hook(hook) for m in self.model.modules() if isinstance(m, PRUNABLE)]
        try:
            with torch.no_grad():
                was_training = self.model.training
                self.model.eval()
                for xb, _ in batches(calib.x, calib.y, calib.batch_size):
                    real[0] = real_tokens(self.model, xb)
                    self.model(xb)
                self.model.train(was_training)
        finally:
            for h in handles:
                h.remove()
        return {m: (s / n, z / n, q.sqrt().float()) for m, (s, z, q, n) in sums.items()}

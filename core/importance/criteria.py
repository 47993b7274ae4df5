"""The importance criteria. Each scores single weights (for unstructured pruning) and whole coupled
channel groups (for channel pruning); channel scores come from Torch-Pruning's group importances,
fed with the signals (gradients, Fisher, activations) this package computes.

Higher score = more important = pruned later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import PruneLabError
from core.importance.signals import Signals

WeightScores = Callable[[nn.Module, Signals, int], dict[str, torch.Tensor]]
ChannelScorer = Callable[[Signals, int], Callable]  # returns a scorer: Torch-Pruning group -> Tensor | None


class NotApplicable(PruneLabError):
    """The criterion has nothing to say about this model or granularity (e.g. BN scale without BatchNorm)."""


@dataclass(frozen=True)
class Criterion:
    name: str
    label: str
    summary: str  # one line for users: what it measures and when it helps
    uses_data: bool  # needs the calibration subset
    weights: WeightScores | None  # None: no per-weight version
    channels: ChannelScorer


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _per_input_channel(module: nn.Module, per_channel: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-input-channel statistic onto the weight's shape (depthwise: per output channel)."""
    w = module.weight
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        return per_channel.view(-1, 1, 1, 1).expand_as(w) if module.groups == w.shape[0] else torch.ones_like(w)
    shape = [1, -1] + [1] * (w.dim() - 2)
    return per_channel.view(shape).expand_as(w)


# ---- per-weight scores -------------------------------------------------------------------------------


def _magnitude(p: int) -> WeightScores:
    return lambda model, signals, seed: {n: m.weight.detach().abs().pow(p) for n, m in _layers(model).items()}


def _taylor_weights(model: nn.Module, signals: Signals, seed: int) -> dict[str, torch.Tensor]:
    """|w * dL/dw|: first-order estimate of the loss change when w is set to zero."""
    g = signals.gradient
    return {n: (m.weight.detach() * g[m.weight]).abs() for n, m in _layers(model).items()}


def _fisher_weights(model: nn.Module, signals: Signals, seed: int) -> dict[str, torch.Tensor]:
    """1/2 * F * w^2 with F the diagonal empirical Fisher: second-order loss change of zeroing w (OBD)."""
    f = signals.fisher
    return {n: 0.5 * f[m.weight] * m.weight.detach().pow(2) for n, m in _layers(model).items()}


def _activation_weights(statistic: str) -> WeightScores:
    """|w| times how active its input channel is: mean |input|, 1 - APoZ, or the L2 norm of the input over every
    calibration example and position (Wanda: Sun et al. 2024, |W_ij| * ||X_j||_2)."""
    def scores(model: nn.Module, signals: Signals, seed: int) -> dict[str, torch.Tensor]:
        acts = signals.activations
        out = {}
        for n, m in _layers(model).items():
            mean_abs, apoz, l2 = acts[m]
            per_channel = {"mean": mean_abs, "apoz": 1 - apoz, "l2": l2}[statistic]
            out[n] = m.weight.detach().abs() * _per_input_channel(m, per_channel)
        return out
    return scores


def _lamp_weights(model: nn.Module, signals: Signals, seed: int) -> dict[str, torch.Tensor]:
    """LAMP (Lee et al. 2021): w^2 divided by the sum of w^2 of every weight of the layer at least as
    large (ties included) — within a layer the same order as magnitude, but comparable across layers."""
    out = {}
    for n, m in _layers(model).items():
        sq = m.weight.detach().pow(2).flatten()
        ascending = torch.sort(sq).values
        before = torch.cat([torch.zeros(1), torch.cumsum(ascending, 0)])  # before[k] = sum of the k smallest
        first = torch.searchsorted(ascending, sq, right=False)  # position of the first value >= each weight
        denom = ascending.sum() - before[first]
        out[n] = torch.where(denom > 0, sq / denom.clamp_min(1e-30), torch.zeros_like(sq)).view_as(m.weight)
    return out


def _random_weights(model: nn.Module, signals: Signals, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.weight.shape, generator=gen) for n, m in _layers(model).items()}


# ---- channel-group scorers (Torch-Pruning importances) -----------------------------------------------


def _tp():
    import torch_pruning as tp

    return tp.importance


def _with_grads(values: Callable[[Signals], dict], scorer_factory: Callable) -> ChannelScorer:
    """A scorer reading .grad: fill every parameter's .grad with the signal first (on the working copy)."""
    def make(signals: Signals, seed: int):
        for p, v in values(signals).items():
            p.grad = v.clone()
        return scorer_factory()
    return make


def _activation_channels(statistic: str) -> ChannelScorer:
    """Torch-Pruning's ActivationImportance reads each consumer layer's `_importance` (per input channel)."""
    def make(signals: Signals, seed: int):
        for module, (mean_abs, apoz, l2) in signals.activations.items():
            module._importance = {"mean": mean_abs, "apoz": 1 - apoz, "l2": l2}[statistic]
        return _tp().ActivationImportance()
    return make


def _random_channels(signals: Signals, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda group: torch.rand(len(group[0].idxs), generator=gen)


def _bn_scale_channels(signals: Signals, seed: int):
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in signals.model.modules()):
        raise NotApplicable("BatchNorm scale needs BatchNorm layers; this model has none")
    return _tp().BNScaleImportance()


CRITERIA: tuple[Criterion, ...] = (
    Criterion("l1", "L1 magnitude", "sum of |w|: cheap, data-free, a strong default", False,
              _magnitude(1), lambda s, seed: _tp().GroupMagnitudeImportance(p=1)),
    Criterion("l2", "L2 magnitude", "sum of w^2: like L1, punishes a few large weights more", False,
              _magnitude(2), lambda s, seed: _tp().GroupMagnitudeImportance(p=2)),
    Criterion("taylor", "Taylor (first order)", "|w * dL/dw| on calibration data: the loss change removal causes",
              True, _taylor_weights, _with_grads(lambda s: s.gradient, lambda: _tp().GroupTaylorImportance())),
    Criterion("fisher", "Fisher (diagonal)", "1/2 F w^2 with squared batch gradients: second-order loss change",
              True, _fisher_weights, _with_grads(lambda s: s.fisher, lambda: _tp().GroupHessianImportance())),
    Criterion("activation", "Mean activation", "how strongly a channel fires on calibration data (inputs of the "
              "next layer)", True, _activation_weights("mean"), _activation_channels("mean")),
    Criterion("apoz", "APoZ", "1 - average percentage of zeros after ReLU: channels that rarely fire go first",
              True, _activation_weights("apoz"), _activation_channels("apoz")),
    Criterion("wanda", "Wanda", "|w| times the L2 norm of its input over calibration data (Wanda): a weight on a "
              "loud input matters more; channels: the input norm alone", True, _activation_weights("l2"),
              _activation_channels("l2")),
    Criterion("bn_scale", "BatchNorm scale", "|gamma| of the BatchNorm after a conv (network slimming); "
              "channel pruning of models with BatchNorm only", False, None, _bn_scale_channels),
    Criterion("lamp", "LAMP", "magnitude rescaled so one threshold fits every layer (global pruning)", False,
              _lamp_weights, lambda s, seed: _tp().LAMPImportance(p=2)),
    Criterion("random", "Random", "a seeded coin flip: the baseline every criterion must beat", False,
              _random_weights, _random_channels),
)

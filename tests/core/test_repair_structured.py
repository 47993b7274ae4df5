"""core.repair_structured: after a structural cut, the layers whose inputs were cut are refitted — checked against
the ridge regression written out on the stacked calibration inputs, the bias shift against the output means, and
against the same cut without repair (no training)."""

from __future__ import annotations

import copy

import pytest
import torch

from core.config import PruneConfig
from core.evaluate import evaluate
from core.plan import plan
from core.prune import apply, calibration
from core.prune.channel import apply_channel
from core.repair import DAMP
from core.repair_structured import consumers, refit_consumers
from tests.conftest import get_spec


def _cut(spec, ratio: float) -> tuple[torch.nn.Module, dict[str, list[int]]]:
    """A channel cut of a copy and the output indices each layer lost."""
    ratios, _ = plan(spec, "channel", ratio)
    model, lost = copy.deepcopy(spec.model), {}
    apply_channel(model, ratios, spec.example_input, outputs=lost)
    return model, lost


def _inputs(model, layer, x):
    seen = []
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().double()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return torch.cat(seen)


def test_least_squares_equals_the_ridge_regression_written_out():
    spec = get_spec("digits-mlp")
    x = calibration(spec, 256, 0).x
    cut, lost = _cut(spec, 0.5)
    names = consumers(spec.model, cut)
    assert names == ["fc2", "fc3"] and set(lost) == {"fc1", "fc2"}  # fc2 lost inputs and outputs
    expected = copy.deepcopy(cut)
    refit_consumers(spec.model, cut, spec.example_input, x, "lstsq", lost)
    old, new = dict(spec.model.named_modules())["fc2"], dict(expected.named_modules())["fc2"]
    a, b = _inputs(spec.model, old, x), _inputs(expected, new, x)
    b1 = torch.cat([b, torch.ones(len(b), 1, dtype=torch.float64)], 1)
    kept = [i for i in range(old.out_features) if i not in lost["fc2"]]
    target = a @ old.weight.detach().double()[kept].T + old.bias.detach().double()[kept]
    gram, damp = b1.T @ b1, DAMP * torch.diagonal(b1.T @ b1).mean()
    cut_weights = torch.cat([new.weight.detach().double().T, new.bias.detach().double()[None]])  # the ridge's centre
    solution = torch.linalg.solve(gram + damp * torch.eye(len(gram), dtype=torch.float64),
                                  b1.T @ target + damp * cut_weights)
    fc2 = dict(cut.named_modules())["fc2"]
    assert torch.allclose(fc2.weight.double(), solution[:-1].T, atol=1e-4)
    assert torch.allclose(fc2.bias.double(), solution[-1], atol=1e-4)


def test_bias_keeps_each_outputs_mean():
    spec = get_spec("digits-mlp")
    x = calibration(spec, 256, 0).x
    cut, lost = _cut(spec, 0.5)
    refit_consumers(spec.model, cut, spec.example_input, x, "bias", lost)
    old, new = dict(spec.model.named_modules())["fc2"], dict(cut.named_modules())["fc2"]
    kept = [i for i in range(old.out_features) if i not in lost["fc2"]]
    before = (_inputs(spec.model, old, x) @ old.weight.detach().double()[kept].T + old.bias.double()[kept]).mean(0)
    after = (_inputs(cut, new, x) @ new.weight.detach().double().T + new.bias.double()).mean(0)
    assert torch.allclose(before, after, atol=1e-4)


@pytest.mark.parametrize(("name", "method", "ratio"), [("digits-mlp", "channel", 0.5), ("digits-mlp", "neuron", 0.6),
                                                        ("mnist-vit", "head", 0.5), ("mnist-resnet", "channel", 0.4)])
def test_repair_beats_the_same_cut_without_it(name, method, ratio):
    """Without any training, through the config: the same units go, accuracy is higher with lstsq."""
    spec = get_spec(name)
    ratios, blocks = plan(spec, method, ratio)
    x, y = spec.split.test_x[:1000], spec.split.test_y[:1000]
    results = {repair: apply(spec, PruneConfig(spec.name, method, ratios, repair=repair, calibration_samples=256))
               for repair in ("none", "lstsq")}
    assert results["none"].removed == results["lstsq"].removed
    accuracy = {k: evaluate(r.model, x, y)["accuracy"] for k, r in results.items()}
    assert accuracy["lstsq"] > accuracy["none"] + 0.005, accuracy

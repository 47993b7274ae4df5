"""Unstructured magnitude pruning: masks equal torch's own l1_unstructured, counts are exact, masks fold
away cleanly, fine-tuning keeps pruned weights at zero, and the shared base model is never touched."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from core.config import PruneConfig
from core.errors import PruneLabError
from core.export import deployable
from core.finetune import Recipe, fit
from core.graph import unstructured_units
from core.metrics import count_nonzero
from core.prune import apply
from core.prune.unstructured import apply_unstructured, magnitude_mask, make_permanent, pruning_hooks
from core.spec import fingerprint
from tests.conftest import get_spec

RATIOS = (0.3, 0.5, 0.8)


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _config(spec, ratios: dict[str, float]) -> PruneConfig:
    return PruneConfig(model=spec.name, method="unstructured", ratios=ratios, model_fingerprint=spec.fingerprint)


def test_magnitude_mask_on_a_hand_made_tensor():
    w = torch.tensor([[-3.0, 1.0, 0.5], [2.0, -0.1, 4.0]])
    expected = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # the 3 smallest |w|: 0.1, 0.5, 1.0
    assert torch.equal(magnitude_mask(w, 0.5), expected)
    assert torch.equal(magnitude_mask(w, 0.0), torch.ones_like(w))
    assert torch.equal(magnitude_mask(w, 0.8), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))  # round(4.8) = 5
    # half-way counts round like torch.nn.utils.prune (Python's round: 2.5 -> 2)
    v = torch.tensor([0.4, -0.3, 0.2, 0.1])
    assert torch.equal(magnitude_mask(v, 0.625), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    reference = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        reference.weight.copy_(v.view(1, 4))
    torch_prune.l1_unstructured(reference, "weight", amount=0.625)
    assert torch.equal(reference.weight_mask.flatten(), magnitude_mask(v, 0.625))


@pytest.mark.parametrize("ratio", RATIOS)
def test_masks_equal_torch_l1_unstructured(spec, ratio):
    layers = _prunable(spec.model)
    assert {n for n, _ in layers} == {u.name for u in unstructured_units(spec.model)}
    for name, module in layers:
        reference = copy.deepcopy(module)
        torch_prune.l1_unstructured(reference, "weight", amount=ratio)
        for p in (1, 2):  # per single weight L1 and L2 rank identically
            mask = magnitude_mask(module.weight, ratio, p)
            assert mask.shape == module.weight.shape
            assert torch.equal(mask, reference.weight_mask), (name, ratio, p)


def test_apply_zeroes_exactly_round_ratio_times_numel(spec):
    """Seeded mixed ratios per layer (some 0), through core.prune.apply."""
    rng = random.Random(7)
    units = unstructured_units(spec.model)
    ratios = {u.name: rng.choice([0.0, 0.3, 0.5, 0.8, 0.95]) for u in units}
    before = count_nonzero(spec.model)
    result = apply(spec, _config(spec, ratios))
    modules = dict(result.model.named_modules())
    base = dict(spec.model.named_modules())
    for unit in units:
        module, ratio = modules[unit.name], ratios[unit.name]
        numel = module.weight.numel()
        cut = round(ratio * numel)
        assert int(torch.count_nonzero(module.weight)) == numel - cut, unit.name
        assert result.removed.get(unit.name, 0) == cut
        assert hasattr(module, "weight_mask") == (ratio > 0)
        # the survivors are the original weights, untouched; the largest magnitudes survive
        kept, original = module.weight != 0, base[unit.name].weight.detach()
        assert torch.equal(module.weight[kept], original[kept])
        if 0 < cut < numel:
            assert original.abs()[kept].min() >= original.abs()[~kept].max()
        if module.bias is not None:
            assert torch.equal(module.bias, base[unit.name].bias)
    assert count_nonzero(result.model) == before - sum(result.removed.values())


def test_unknown_layer_names_are_rejected(spec):
    with pytest.raises(PruneLabError, match="no_such_layer"):
        apply(spec, _config(spec, {"no_such_layer": 0.5}))


@pytest.mark.parametrize("name, layer", [("mnist-resnet", "stem.1"), ("mnist-vit", "blocks.0.norm1")])
def test_norm_layers_are_not_unstructured_units(name, layer):
    spec = get_spec(name)
    assert layer not in {u.name for u in unstructured_units(spec.model)}
    with pytest.raises(PruneLabError):
        apply(spec, _config(spec, {layer: 0.5}))


def test_make_permanent_removes_masks_and_keeps_outputs(spec):
    result = apply(spec, _config(spec, {u.name: 0.5 for u in unstructured_units(spec.model)}))
    model = result.model
    assert list(pruning_hooks(model)), "apply should install masks"
    x = spec.split.test_x[:16]
    with torch.no_grad():
        before = model(x)
    nonzero = count_nonzero(model)
    assert make_permanent(model) is model
    assert not list(pruning_hooks(model))
    assert not any(n.endswith("_orig") for n, _ in model.named_parameters())
    assert not any(n.endswith("_mask") for n, _ in model.named_buffers())
    for module in model.modules():
        assert not any(isinstance(h, torch_prune.BasePruningMethod) for h in module._forward_pre_hooks.values())
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in spec.model.named_parameters()}
    assert count_nonzero(model) == nonzero
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)


def test_finetuning_keeps_pruned_weights_exactly_zero():
    spec = get_spec("digits-mlp")
    base_fp = fingerprint(spec.model)
    ratios = {"fc1": 0.8, "fc2": 0.5, "fc3": 0.3}
    result = apply(spec, _config(spec, ratios))
    model = result.model
    masks = {n: m.weight_mask.clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")}
    assert set(masks) == set(ratios)
    kept_before = {n: m.weight.detach()[masks[n] == 1].clone() for n, m in model.named_modules() if n in masks}
    losses = fit(model, spec.split.train_x, spec.split.train_y, Recipe(epochs=1), seed=0)
    assert len(losses) == 1
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        weight = modules[name].weight.detach()
        assert torch.count_nonzero(weight[mask == 0]) == 0, name
        assert torch.equal(modules[name].weight_mask, mask)
        assert not torch.equal(weight[mask == 1], kept_before[name]), f"{name}: fine-tuning changed nothing"
    # after training the masked weight is a non-leaf tensor; deployable() must still copy and fold it
    dense = deployable(model)
    assert not list(pruning_hooks(dense))
    for name, mask in masks.items():
        assert torch.count_nonzero(dict(dense.named_modules())[name].weight[mask == 0]) == 0
    x = spec.split.test_x[:8]
    with torch.no_grad():
        assert torch.allclose(dense(x), model.eval()(x), atol=1e-6)
    assert fingerprint(spec.model) == base_fp == spec.fingerprint


def test_shared_model_untouched(spec):
    params_before = {n: p.detach().clone() for n, p in spec.model.named_parameters()}
    apply(spec, _config(spec, {u.name: 0.8 for u in unstructured_units(spec.model)}))
    assert fingerprint(spec.model) == spec.fingerprint
    assert not list(pruning_hooks(spec.model))
    for n, p in spec.model.named_parameters():
        assert torch.equal(p, params_before[n]), n


def test_apply_unstructured_in_place_returns_counts():
    model = copy.deepcopy(get_spec("digits-mlp").model)
    removed = apply_unstructured(model, {"fc1": 0.25, "fc3": 0.0})
    assert removed == {"fc1": round(0.25 * 64 * 128)}
    assert hasattr(model.fc1, "weight_mask") and not hasattr(model.fc3, "weight_mask")

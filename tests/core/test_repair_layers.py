"""core.repair_layers on real models: each layer's H is what its inputs make, layers are repaired in forward order
on what the earlier (already repaired) layers pass on, masks land as torch.nn.utils.prune masks, N:M patterns
follow core.prune.patterns' convention, and repair beats masking alone without any training."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from core.evaluate import evaluate
from core.prune import calibration
from core.prune.unstructured import apply_unstructured
from core.repair import masked_lstsq, sparsegpt
from core.repair_layers import forward_order, hessian, repair_masks
from tests.conftest import get_spec


def _digits():
    spec = get_spec("digits-mlp")
    return spec, calibration(spec, 256, 0).x


def _linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def test_hessian_of_a_convolution_is_that_of_its_unfolded_patches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(4, 5, 3))
    x = torch.randn(10, 3, 9, 9)
    inner = model[1](model[0](x)).detach()
    rows = F.unfold(inner, 3).transpose(1, 2).reshape(-1, 36).double()
    assert torch.allclose(hessian(model, model[2], x, batch_size=4), rows.T @ rows, atol=1e-8)


def test_layers_are_repaired_in_forward_order_on_what_reaches_them():
    spec, x = _digits()
    model = copy.deepcopy(spec.model)
    names = _linears(model)
    assert forward_order(model, spec.example_input, list(reversed(names))) == names
    reference = copy.deepcopy(spec.model)
    removed = repair_masks(model, spec.example_input, x, "sparsegpt", dict.fromkeys(names, 0.5))
    modules, ref_modules = dict(model.named_modules()), dict(reference.named_modules())
    for name in names:  # the same layer repaired by hand, on the inputs the hand-repaired layers before it give
        layer = ref_modules[name]
        repaired, keep = sparsegpt(layer.weight.detach(), hessian(reference, layer, x), ratio=0.5)
        layer.weight.data.copy_(repaired)
        assert torch.allclose(modules[name].weight, repaired, atol=1e-5)
        assert torch.equal(modules[name].weight_mask.bool(), keep)
        assert removed[name] == int((~keep).sum()) == layer.weight.numel() // 2


def test_repair_beats_masking_alone_without_training():
    spec, x = _digits()
    ratios = dict.fromkeys(_linears(spec.model), 0.7)
    masked = copy.deepcopy(spec.model)
    apply_unstructured(masked, ratios)
    keep = {n: dict(masked.named_modules())[n].weight_mask.clone() for n in ratios}
    fixed = copy.deepcopy(spec.model)
    repair_masks(fixed, spec.example_input, x, "lstsq", ratios, keep=keep)
    sparse = copy.deepcopy(spec.model)
    repair_masks(sparse, spec.example_input, x, "sparsegpt", ratios)
    test = spec.split.test_x, spec.split.test_y
    accuracy = {k: evaluate(m, *test)["accuracy"] for k, m in (("masked", masked), ("lstsq", fixed),
                                                                 ("sparsegpt", sparse))}
    assert accuracy["lstsq"] > accuracy["masked"] + 0.02 and accuracy["sparsegpt"] > accuracy["masked"] + 0.02, accuracy
    first = dict(fixed.named_modules())[next(iter(ratios))]
    assert torch.equal(first.weight_mask, keep[next(iter(ratios))])  # the given mask, repaired exactly:
    w = dict(spec.model.named_modules())[next(iter(ratios))].weight.detach()
    assert torch.allclose(first.weight, masked_lstsq(w, hessian(spec.model, dict(spec.model.named_modules())[
        next(iter(ratios))], x), keep[next(iter(ratios))].bool()), atol=1e-5)


def test_nm_on_a_convolution_follows_the_pattern_convention():
    """2:4 along input channels at every kernel position, as core.prune.patterns.nm_mask groups them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1), nn.Flatten())
    x = torch.randn(32, 8, 6, 6)
    repair_masks(model, x[:1], x, "sparsegpt", {"0": 0.5, "2": 0.5}, nm=(2, 4))
    for layer in (model[0], model[2]):
        groups = layer.weight_mask.movedim(1, -1).reshape(*layer.weight.shape[:1], 3, 3, 2, 4)
        assert (groups.sum(-1) == 2).all()
        assert (layer.weight[layer.weight_mask == 0] == 0).all()


def test_a_config_with_repair_prunes_through_the_method_and_replays_identically():
    """PruneConfig.repair reaches the mask methods: unstructured (sparsegpt; lstsq of the wanda masks) and nm
    (sparsegpt 2:4); the result carries torch.nn.utils.prune masks at the asked share, beats the same cut without
    repair, and applying the config again gives the same weights."""
    from core.config import PruneConfig
    from core.plan import plan
    from core.prune import apply

    spec = get_spec("digits-mlp")
    test = spec.split.test_x, spec.split.test_y
    cases = [("unstructured", "l1", "sparsegpt", 0.7), ("unstructured", "wanda", "lstsq", 0.7), ("nm", "l1",
                                                                                                 "sparsegpt", None)]
    for method, criterion, repair, ratio in cases:
        ratios, _ = plan(spec, method, ratio)
        plain = PruneConfig(spec.name, method, ratios, criterion=criterion)
        fixed = PruneConfig(spec.name, method, ratios, criterion=criterion, repair=repair)
        before, after = apply(spec, plain), apply(spec, fixed)
        assert after.removed == before.removed, (method, repair)  # the same number of weights go
        gain = evaluate(after.model, *test)["accuracy"] - evaluate(before.model, *test)["accuracy"]
        assert gain > 0.01, (method, repair, gain)
        again = apply(spec, fixed)
        for (n, a), (_, b) in zip(after.model.state_dict().items(), again.model.state_dict().items(), strict=True):
            assert torch.equal(a, b), n
    assert all(p.grad is None for p in spec.model.parameters())  # the cached model was left alone


def test_a_repair_reports_each_layer_as_it_goes():
    from core import schedule
    from core.config import PruneConfig
    from core.plan import plan

    spec = get_spec("digits-mlp")
    seen = []
    for method, repair in (("unstructured", "sparsegpt"), ("channel", "lstsq")):
        ratios, _ = plan(spec, method, 0.5)
        schedule.train(spec, PruneConfig(spec.name, method, ratios, repair=repair),
                       progress=lambda stage, done, total, method=method: seen.append((method, stage, done, total)))
    assert [s[2:] for s in seen if s[:2] == ("unstructured", "repairing")] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [s[2:] for s in seen if s[:2] == ("channel", "repairing")] == [(0, 2), (1, 2), (2, 2)]


def test_stopping_each_pass_at_the_layer_gives_the_same_hessian_also_for_a_shared_layer():
    from core.repair_layers import calls_per_forward

    class Shared(nn.Module):  # one Linear used twice per forward pass
        def __init__(self):
            super().__init__()
            self.inner, self.out = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.out(self.inner(torch.relu(self.inner(x))))

    torch.manual_seed(0)
    model, x = Shared(), torch.randn(50, 6)
    for layer in (model.inner, model.out):
        calls = calls_per_forward(model, layer, x[:1])
        assert calls == (2 if layer is model.inner else 1)
        assert torch.allclose(hessian(model, layer, x, batch_size=8, calls=calls), hessian(model, layer, x, 8))

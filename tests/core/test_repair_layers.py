"""core.repair_layers on real models: each layer's H is what its inputs make, layers are repaired in forward order
on what the earlier (already repaired) layers pass on, masks land as torch.nn.utils.prune masks, N:M patterns
follow core.prune.patterns' convention, and repair beats masking alone without any training."""

from __future__ import annotations

import copy

import pytest
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


def test_hessian_summed_a_few_rows_at_a_time_is_the_whole_sum():
    """The hook converts and adds its rows to H in chunks (a small float64 temporary, not the batch's): the same H,
    also for a convolution's unfolded patches and in a column order."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 40), nn.ReLU(), nn.Linear(40, 3))
    x = torch.randn(300, 5)
    rows = model[1](model[0](x)).detach().double()
    exact = rows.T @ rows
    for chunk in (7, 128, 1000):
        got = hessian(model, model[2], x, batch_size=100, rows=chunk)
        assert torch.allclose(got, exact, rtol=1e-12, atol=1e-12 * exact.abs().max())
    order = torch.randperm(40)
    got = hessian(model, model[2], x, batch_size=100, rows=7, columns=order)
    assert torch.allclose(got, exact[order][:, order], rtol=1e-12, atol=1e-12 * exact.abs().max())
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3))
    xc = torch.randn(10, 3, 9, 9)
    patches = F.unfold(conv[1](conv[0](xc)).detach(), 3).transpose(1, 2).reshape(-1, 36).double()
    assert torch.allclose(hessian(conv, conv[2], xc, batch_size=4, rows=5), patches.T @ patches, rtol=1e-12,
                          atol=1e-12 * (patches.T @ patches).abs().max())


def _allocations(run) -> tuple[int, int]:
    """(peak, end) of the bytes torch's CPU allocator holds while run() runs, above what it held before: every
    tensor allocation and free, in order, as torch.profiler records them (memory LAPACK allocates for itself is not
    a tensor and not seen here: bench.repair measures the process's resident memory)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak, live


@pytest.mark.parametrize("how", ["sparsegpt", "lstsq"])
def test_repairing_a_layer_holds_its_hessian_and_inputs_at_most(how):
    """Issue 14's memory bound, counted in tensor allocations: repairing a 2048-input layer from 512 calibration
    rows (as bench.repair --memory's 8 x 64 tokens) in one batch holds at most its H plus its calibration inputs in
    float64, the mask and masked weight torch.nn.utils.prune leaves included (they are made once H is gone)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 2048), nn.ReLU(), nn.Linear(2048, 128))
    x = torch.randn(8, 64, 8)  # 8 examples of 64 positions: one calibration batch
    keep = {"2": (torch.rand(128, 2048) > 0.5).float()} if how == "lstsq" else None
    peak, _ = _allocations(lambda: repair_masks(model, x[:1], x, how, {"2": 0.5}, keep=keep))
    bound = 2048 * 2048 * 8 + 512 * 2048 * 8  # H, and the layer's 512 calibration input rows, float64
    assert peak <= bound, (peak - bound) / 2**20


def test_repairing_a_language_models_widest_layer_holds_its_hessian_and_inputs_at_most():
    """The same bound on bench.repair --memory's shape (width 768, MLP 3072, 8 texts of 64 tokens): the forward
    passes that sum the MLP output layer's H hold its hidden layer twice (before and after GELU) and the residual
    stream: a few texts at a time, not every calibration text at once."""
    from sample_models.tiny_lm import TinyLM

    torch.manual_seed(0)
    model = TinyLM(vocab=256, dim=768, depth=1, num_heads=12, mlp_hidden=3072, context=64).eval()
    x = torch.randint(0, 256, (8, 64))
    with torch.no_grad():
        model(x)
    peak, _ = _allocations(lambda: repair_masks(model, x[:1], x, "sparsegpt", {"blocks.0.fc2": 0.5}))
    bound = 3072 * 3072 * 8 + 512 * 3072 * 8  # H, and the 512 calibration tokens' inputs, float64
    assert peak <= bound, (peak - bound) / 2**20

"""Importance criteria: heatmap rows for every model x criterion x granularity, per-weight and per-channel
scores recomputed by hand on a tiny model (autograd gradients, batch Fisher, activation statistics, LAMP,
Torch-Pruning's group definitions), the shared model left untouched, seeding, and pruning that follows
the chosen criterion."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import PruneConfig
from core.errors import PruneLabError
from core.graph import channel_units
from core.importance import REGISTRY, Calibration, NotApplicable, channel_scores, get, weight_scores
from core.methods import heatmap, units
from core.prune import apply, calibration
from core.spec import fingerprint
from tests.conftest import get_spec

CRITERIA = ("l1", "l2", "taylor", "fisher", "activation", "apoz", "wanda", "bn_scale", "lamp", "random")
DATA_CRITERIA = ("taylor", "fisher", "activation", "apoz", "wanda")
DATA_FREE = ("l1", "l2", "bn_scale", "lamp", "random")
WITHOUT_BATCHNORM = ("digits-mlp", "mnist-vit")


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


# ---- the registry ------------------------------------------------------------------------------------


def test_registry_lists_every_criterion_with_its_data_needs():
    assert set(REGISTRY) == set(CRITERIA)
    for name, crit in REGISTRY.items():
        assert crit.name == name
        assert crit.label.strip() and crit.summary.strip()
        assert crit.uses_data == (name in DATA_CRITERIA), name
        assert (crit.weights is None) == (name == "bn_scale"), name
        assert callable(crit.channels)
        assert get(name) is crit


def test_unknown_criterion_is_refused():
    with pytest.raises(PruneLabError, match="nope"):
        get("nope")
    with pytest.raises(PruneLabError, match="nope"):
        PruneConfig(model="digits-mlp", method="unstructured", ratios={}, criterion="nope")
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(PruneLabError):
        weight_scores(model, "nope")
    with pytest.raises(PruneLabError):
        channel_scores(model, torch.zeros(1, 3), "nope")
    for name in CRITERIA:  # every registered name is accepted by a config
        PruneConfig(model="digits-mlp", method="channel", ratios={}, criterion=name)


# ---- heatmap rows on every sample model --------------------------------------------------------------


@pytest.mark.parametrize("method", ["unstructured", "channel"])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_heatmap_rows_for_every_model_criterion_and_method(spec, criterion, method):
    calib = calibration(spec, 128, 0)
    not_applicable = criterion == "bn_scale" and (method == "unstructured" or not _has_batchnorm(spec.model))
    if not_applicable:
        with pytest.raises(NotApplicable) as info:
            heatmap(spec.model, spec.example_input, method, criterion, calib, 0)
        assert "batchnorm" in str(info.value).lower() or "channel" in str(info.value).lower()
        return
    rows = heatmap(spec.model, spec.example_input, method, criterion, calib, 0)
    expected = units(spec.model, spec.example_input, method)
    assert list(rows) == [u.name for u in expected]  # one row per unit, in unit order
    modules = dict(spec.model.named_modules())
    for unit in expected:
        row = rows[unit.name]
        assert isinstance(row, np.ndarray) and row.ndim == 1
        width = modules[unit.name].weight.shape[0] if method == "unstructured" else unit.size
        assert len(row) == width, unit.name
        assert np.isfinite(row).all(), unit.name
        assert (row >= 0).all(), unit.name  # every criterion scores a magnitude: nothing negative
        top = np.abs(row).max()
        assert top == pytest.approx(1.0, abs=1e-12) or (row == 0).all(), unit.name


# ---- hand computations on a tiny model ---------------------------------------------------------------

W1 = [[0.5, -0.3, 0.8], [-0.6, 0.4, 0.25], [0.35, 0.7, -0.45], [-0.2, -0.55, 0.1]]
B1 = [0.1, -0.2, 0.05, 0.3]
W2 = [[0.65, -0.15, 0.9, 0.42], [-0.33, 0.75, -0.85, 0.12]]
B2 = [0.05, -0.05]
X = [
    [1.0, 0.0, 0.5],
    [-1.0, 2.0, 0.0],
    [0.0, 0.0, 0.0],
    [2.0, -1.0, 1.0],
    [0.5, 0.5, -0.5],
    [-2.0, 0.0, 1.5],
    [1.5, 1.0, -1.0],
    [0.0, -1.5, 0.5],
    [-0.5, 1.0, 2.0],
    [1.0, -2.0, -1.0],
]
Y = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0]
BATCH = 4  # batches of 4, 4 and 2 samples


def _tiny() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W1))
        model[0].bias.copy_(torch.tensor(B1))
        model[2].weight.copy_(torch.tensor(W2))
        model[2].bias.copy_(torch.tensor(B2))
    return model.eval()


def _tiny_calib() -> Calibration:
    return Calibration(torch.tensor(X), torch.tensor(Y), batch_size=BATCH)


def _params64() -> list[torch.Tensor]:
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (W1, B1, W2, B2)]


def _hidden64() -> torch.Tensor:
    """The second layer's inputs, computed without the model: ReLU(x W1^T + b1)."""
    x = torch.tensor(X, dtype=torch.float64)
    return torch.relu(x @ torch.tensor(W1, dtype=torch.float64).T + torch.tensor(B1, dtype=torch.float64))


def _grads64(rows: slice) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy over X[rows] w.r.t. (W1, b1, W2, b2), by plain autograd."""
    w1, b1, w2, b2 = _params64()
    x = torch.tensor(X, dtype=torch.float64)[rows]
    y = torch.tensor(Y)[rows]
    logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
    loss = F.cross_entropy(logits, y)
    return list(torch.autograd.grad(loss, [w1, b1, w2, b2]))


def _full_gradient() -> tuple[torch.Tensor, torch.Tensor]:
    g = _grads64(slice(None))
    return g[0], g[2]


def _fisher() -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the calibration batches (4, 4, 2 samples) of each batch's squared mean-loss gradient."""
    per_batch = [_grads64(slice(s, s + BATCH)) for s in range(0, len(X), BATCH)]
    assert len(per_batch) == 3
    f1 = sum(g[0].pow(2) for g in per_batch) / len(per_batch)
    f2 = sum(g[2].pow(2) for g in per_batch) / len(per_batch)
    return f1, f2


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected.double(), rtol=0, atol=atol)


def test_tiny_fixture_is_not_degenerate():
    """The hand-made data exercise what the checks below claim: exact zeros in both layers' inputs (APoZ
    strictly between 0 and 1 for some channel), several calibration batches whose squared gradients
    differ from the squared full gradient, and per-batch means that differ from a size-weighted mean."""
    h = _hidden64()
    zeros = (h == 0).double().mean(0)
    assert ((zeros > 0) & (zeros < 1)).any() and (zeros < 1).all()
    assert (torch.tensor(X) == 0).any()
    g1, _ = _full_gradient()
    f1, _ = _fisher()
    assert (f1 - g1.pow(2)).abs().max() > 1e-3
    per_batch = [_grads64(slice(s, s + BATCH))[0].pow(2) for s in range(0, len(X), BATCH)]
    weighted = (4 * per_batch[0] + 4 * per_batch[1] + 2 * per_batch[2]) / 10
    assert (weighted - f1).abs().max() > 1e-4


def test_weight_scores_cover_every_layer_with_the_weight_shape():
    model = _tiny()
    for name in CRITERIA:
        if name == "bn_scale":
            with pytest.raises(NotApplicable, match="channel"):
                weight_scores(model, name, _tiny_calib(), 0)
            continue
        scores = weight_scores(model, name, _tiny_calib(), 0)
        assert set(scores) == {"0", "2"}, name
        assert scores["0"].shape == (4, 3) and scores["2"].shape == (2, 4), name
        assert all(torch.isfinite(s).all() for s in scores.values()), name


def test_magnitude_weight_scores_by_hand():
    model = _tiny()
    l1 = weight_scores(model, "l1", None, 0)
    l2 = weight_scores(model, "l2", None, 0)
    for name, w in (("0", W1), ("2", W2)):
        w = torch.tensor(w)
        _close(l1[name], w.abs())
        _close(l2[name], w.pow(2))


def test_taylor_weight_scores_by_hand():
    """|w * g| with g the gradient of the mean loss over all ten samples (not per batch)."""
    g1, g2 = _full_gradient()
    scores = weight_scores(_tiny(), "taylor", _tiny_calib(), 0)
    _close(scores["0"], (torch.tensor(W1, dtype=torch.float64) * g1).abs())
    _close(scores["2"], (torch.tensor(W2, dtype=torch.float64) * g2).abs())


def test_fisher_weight_scores_by_hand():
    """0.5 * F * w^2 with F the mean over the three batches of the squared batch-loss gradient."""
    f1, f2 = _fisher()
    scores = weight_scores(_tiny(), "fisher", _tiny_calib(), 0)
    _close(scores["0"], 0.5 * f1 * torch.tensor(W1, dtype=torch.float64).pow(2))
    _close(scores["2"], 0.5 * f2 * torch.tensor(W2, dtype=torch.float64).pow(2))


def test_activation_and_apoz_weight_scores_by_hand():
    """|w| times mean |input| (activation) or the fraction of non-zero inputs (APoZ) of its input channel."""
    x = torch.tensor(X, dtype=torch.float64)
    h = _hidden64()
    w1 = torch.tensor(W1, dtype=torch.float64).abs()
    w2 = torch.tensor(W2, dtype=torch.float64).abs()
    act = weight_scores(_tiny(), "activation", _tiny_calib(), 0)
    _close(act["0"], w1 * x.abs().mean(0))
    _close(act["2"], w2 * h.abs().mean(0))
    apoz = weight_scores(_tiny(), "apoz", _tiny_calib(), 0)
    _close(apoz["0"], w1 * (1 - (x == 0).double().mean(0)))
    _close(apoz["2"], w2 * (1 - (h == 0).double().mean(0)))
    wanda = weight_scores(_tiny(), "wanda", _tiny_calib(), 0)  # Wanda: |W_ij| * ||X_j||_2 over every example
    _close(wanda["0"], w1 * x.pow(2).sum(0).sqrt())
    _close(wanda["2"], w2 * h.pow(2).sum(0).sqrt())


def _lamp_brute_force(w: torch.Tensor) -> torch.Tensor:
    flat = [float(v) ** 2 for v in w.flatten()]
    out = [s / sum(t for t in flat if t >= s) for s in flat]
    return torch.tensor(out, dtype=torch.float64).view(w.shape)


def test_lamp_weight_scores_by_brute_force():
    scores = weight_scores(_tiny(), "lamp", None, 0)
    for name, w in (("0", W1), ("2", W2)):
        _close(scores[name], _lamp_brute_force(torch.tensor(w)))
        # within a layer LAMP ranks like magnitude
        assert torch.equal(torch.argsort(scores[name].flatten()), torch.argsort(torch.tensor(w).abs().flatten()))


def test_lamp_scores_tied_weights_alike():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5]]))
    scores = weight_scores(layer, "lamp", None, 0)[""]
    _close(scores, _lamp_brute_force(layer.weight.detach()))  # both |w| = 1 score 1 / (1 + 1 + 4)


def test_random_weight_scores_are_seeded_uniform_draws():
    for seed in (0, 7):
        gen = torch.Generator().manual_seed(seed)
        first, second = torch.rand(4, 3, generator=gen), torch.rand(2, 4, generator=gen)
        scores = weight_scores(_tiny(), "random", None, seed)
        assert torch.equal(scores["0"], first) and torch.equal(scores["2"], second)


# ---- channel scores of the tiny model: Torch-Pruning's group definitions ------------------------------


def _normalised(group_score: torch.Tensor) -> torch.Tensor:
    return group_score / group_score.mean()  # Torch-Pruning's normalizer "mean"


def test_tiny_model_has_one_hidden_channel_group():
    (unit,) = channel_units(_tiny(), torch.zeros(1, 3))  # the classifier's outputs are never a unit
    assert unit.name == "0" and unit.size == 4
    assert {(m.name, m.side) for m in unit.members} == {("0", "out"), ("2", "in")}


def test_taylor_channel_scores_follow_torch_pruning_group_taylor():
    """GroupTaylorImportance: sum |w*g| over layer 0's weight rows (no bias) and layer 2's weight columns,
    average the two (group_reduction "mean"), divide by the mean over channels (normalizer "mean")."""
    g1, g2 = _full_gradient()
    w1, w2 = torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)
    out_side = (w1 * g1).abs().sum(1)
    in_side = (w2 * g2).abs().sum(0)
    expected = _normalised((out_side + in_side) / 2)
    scores = channel_scores(_tiny(), torch.zeros(1, 3), "taylor", _tiny_calib(), 0)
    assert set(scores) == {"0"}
    _close(scores["0"], expected, atol=1e-5)
    with_bias = _normalised((out_side + in_side + (torch.tensor(B1, dtype=torch.float64) * _grads64(slice(None))[1])
                             .abs()) / 3)
    assert (with_bias - expected).abs().max() > 1e-3  # the bias really would have made a difference


def test_fisher_channel_scores_follow_torch_pruning_group_hessian():
    f1, f2 = _fisher()
    w1, w2 = torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)
    expected = _normalised(((w1.pow(2) * f1).sum(1) + (w2.pow(2) * f2).sum(0)) / 2)
    scores = channel_scores(_tiny(), torch.zeros(1, 3), "fisher", _tiny_calib(), 0)
    _close(scores["0"], expected, atol=1e-5)


def test_magnitude_and_lamp_channel_scores_follow_torch_pruning():
    w1, w2 = torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)
    x = torch.zeros(1, 3)
    for name, p in (("l1", 1), ("l2", 2)):
        expected = _normalised((w1.abs().pow(p).sum(1) + w2.abs().pow(p).sum(0)) / 2)
        _close(channel_scores(_tiny(), x, name, None, 0)["0"], expected, atol=1e-5)
    group = (w1.pow(2).sum(1) + w2.pow(2).sum(0)) / 2
    lamp = [float(s) / sum(float(t) for t in group if t >= s) for s in group]  # distinct values: no ties
    _close(channel_scores(_tiny(), x, "lamp", None, 0)["0"], torch.tensor(lamp, dtype=torch.float64), atol=1e-5)


def test_activation_and_apoz_channel_scores_use_the_next_layers_inputs():
    h = _hidden64()
    x = torch.zeros(1, 3)
    act = channel_scores(_tiny(), x, "activation", _tiny_calib(), 0)["0"]
    _close(act, _normalised(h.abs().mean(0)), atol=1e-5)
    apoz = channel_scores(_tiny(), x, "apoz", _tiny_calib(), 0)["0"]
    _close(apoz, _normalised(1 - (h == 0).double().mean(0)), atol=1e-5)
    wanda = channel_scores(_tiny(), x, "wanda", _tiny_calib(), 0)["0"]
    _close(wanda, _normalised(h.pow(2).sum(0).sqrt()), atol=1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_dead_channel_group_scores_zero_not_nan():
    model = _tiny()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every hidden unit is off on every sample
    assert (_tiny()[0](torch.tensor(X)) - 100.0 < 0).all()
    for name in DATA_CRITERIA:
        row = heatmap(model, torch.zeros(1, 3), "channel", name, _tiny_calib(), 0)["0"]
        assert np.isfinite(row).all() and (row == 0).all(), name


def test_random_channel_scores_are_seeded_uniform_draws():
    for seed in (0, 3):
        expected = torch.rand(4, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(channel_scores(_tiny(), torch.zeros(1, 3), "random", None, seed)["0"], expected)


# ---- the same definitions on the sample models (convs, depthwise convs, tokens, BatchNorm) -----------


def _inputs_of_every_layer(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each Conv2d/Linear's input on x, captured from a private copy of the model."""
    work = copy.deepcopy(model).eval()
    seen, handles = {}, []
    for name, m in _layers(work).items():
        handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, inp[0])))
    with torch.no_grad():
        work(x)
    for h in handles:
        h.remove()
    return seen


def test_activation_weight_scores_on_sample_models(spec):
    calib = calibration(spec, 100, 1)  # batches of 64 and 36: the mean is over all images and positions
    inputs = _inputs_of_every_layer(spec.model, calib.x)
    scores = weight_scores(spec.model, "activation", calib, 0)
    apoz_scores = weight_scores(spec.model, "apoz", calib, 0)
    layers = _layers(spec.model)
    assert set(scores) == set(layers) == set(apoz_scores)
    for name, m in layers.items():
        a = inputs[name].double()
        per_channel = a.abs().mean((0, 2, 3)) if a.dim() == 4 else a.abs().flatten(0, -2).mean(0)
        nonzero = (a != 0).double().mean((0, 2, 3)) if a.dim() == 4 else (a != 0).double().flatten(0, -2).mean(0)
        w = m.weight.detach().double().abs()
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels  # depthwise: output c reads input channel c
            expected, expected_apoz = w * per_channel.view(-1, 1, 1, 1), w * nonzero.view(-1, 1, 1, 1)
        else:
            shape = (1, -1) + (1,) * (w.dim() - 2)
            expected, expected_apoz = w * per_channel.view(shape), w * nonzero.view(shape)
        torch.testing.assert_close(scores[name].double(), expected, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(apoz_scores[name].double(), expected_apoz, rtol=1e-4, atol=1e-6, msg=name)


def test_taylor_weight_scores_on_sample_models(spec):
    """|w * g| with g the full-set mean-loss gradient in eval mode (BatchNorm on running statistics)."""
    calib = calibration(spec, 100, 1)
    work = copy.deepcopy(spec.model).eval()
    logits = work(calib.x)  # a language model: (N, T, vocab) against next tokens (N, T), every position counted
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), calib.y.reshape(-1))
    layers = _layers(work)
    grads = torch.autograd.grad(loss, [m.weight for m in layers.values()])
    scores = weight_scores(spec.model, "taylor", calib, 0)
    for (name, m), g in zip(layers.items(), grads, strict=True):
        expected = (m.weight.detach() * g).abs()
        scale = float(expected.abs().max())
        torch.testing.assert_close(scores[name], expected, rtol=1e-3, atol=1e-4 * scale + 1e-12, msg=name)


# ---- the shared model is never touched ---------------------------------------------------------------


def test_scoring_leaves_the_shared_model_untouched(spec):
    model = spec.model
    calib = calibration(spec, 128, 0)
    before = fingerprint(model)
    assert before == spec.fingerprint
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    training = model.training
    for name in CRITERIA:
        if name != "bn_scale":
            weight_scores(model, name, calib, 0)
        if name != "bn_scale" or _has_batchnorm(model):
            channel_scores(model, spec.example_input, name, calib, 0)
        assert fingerprint(model) == before, name
        assert all(p.grad is None for p in model.parameters()), name
        assert {n: p.requires_grad for n, p in model.named_parameters()} == requires, name
        assert model.training == training, name
        for m in model.modules():
            assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks, name
            assert not hasattr(m, "_importance"), name


# ---- calibration data: needed by some, ignored by others ---------------------------------------------


def test_data_criteria_need_calibration_data():
    spec = get_spec("digits-mlp")
    empty = Calibration(spec.split.train_x[:0], spec.split.train_y[:0])
    for name in DATA_CRITERIA:
        for calib in (None, empty):
            with pytest.raises(PruneLabError, match="calibration"):
                weight_scores(spec.model, name, calib, 0)
            with pytest.raises(PruneLabError, match="calibration"):
                channel_scores(spec.model, spec.example_input, name, calib, 0)
            for method in ("unstructured", "channel"):
                with pytest.raises(PruneLabError, match="calibration"):
                    heatmap(spec.model, spec.example_input, method, name, calib, 0)


@pytest.mark.parametrize("model_name", ["digits-mlp", "mnist-resnet"])
def test_data_free_criteria_work_without_calibration_data(model_name):
    spec = get_spec(model_name)
    calib = calibration(spec, 64, 0)
    for name in DATA_FREE:
        if name != "bn_scale":
            free = weight_scores(spec.model, name, None, 0)
            with_data = weight_scores(spec.model, name, calib, 0)
            assert set(free) == set(_layers(spec.model))
            assert all(torch.equal(free[k], with_data[k]) for k in free), name  # data is not used
        if name != "bn_scale" or _has_batchnorm(spec.model):
            free = channel_scores(spec.model, spec.example_input, name, None, 0)
            with_data = channel_scores(spec.model, spec.example_input, name, calib, 0)
            assert list(free) == [u.name for u in channel_units(spec.model, spec.example_input)], name
            assert all(torch.equal(free[k], with_data[k]) for k in free), name


@pytest.mark.parametrize("model_name", WITHOUT_BATCHNORM)
def test_bn_scale_is_not_applicable_without_batchnorm(model_name):
    spec = get_spec(model_name)
    with pytest.raises(NotApplicable, match="BatchNorm"):
        channel_scores(spec.model, spec.example_input, "bn_scale", None, 0)
    assert issubclass(NotApplicable, PruneLabError)


def test_bn_scale_channel_scores_are_batchnorm_gammas():
    """On a conv -> BN chain, BNScaleImportance is |gamma| of the group's BatchNorm over its mean."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 2 * 2, 2)).eval()
    gamma = torch.tensor([0.5, -2.0, 1.25])
    with torch.no_grad():
        model[1].weight.copy_(gamma)
    scores = channel_scores(model, torch.zeros(1, 1, 4, 4), "bn_scale", None, 0)
    assert list(scores) == ["0"]
    _close(scores["0"], gamma.abs() / gamma.abs().mean(), atol=1e-6)


# ---- determinism -------------------------------------------------------------------------------------


def test_random_is_seeded_for_both_granularities():
    spec = get_spec("mnist-resnet")
    x = spec.example_input
    a, b, c = (weight_scores(spec.model, "random", None, s) for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    a, b, c = (channel_scores(spec.model, x, "random", None, s) for s in (0, 0, 1))
    assert set(a) == set(b) == set(c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    ha, hb, hc = (heatmap(spec.model, x, "channel", "random", None, s) for s in (5, 5, 6))
    assert all(np.array_equal(ha[k], hb[k]) for k in ha) and not all(np.array_equal(ha[k], hc[k]) for k in ha)


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_gradient_criteria_are_deterministic(criterion):
    spec = get_spec("mnist-resnet")
    calib = calibration(spec, 128, 0)
    a, b = (weight_scores(spec.model, criterion, calib, 0) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(bool((a[k] > 0).any()) for k in a)
    a, b = (channel_scores(spec.model, spec.example_input, criterion, calib, 0) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = weight_scores(spec.model, criterion, calibration(spec, 128, 1), 0)  # other images, other scores
    assert not all(torch.equal(a_k, other[k]) for k, a_k in weight_scores(spec.model, criterion, calib, 0).items())


# ---- pruning follows the criterion -------------------------------------------------------------------


def test_unstructured_pruning_removes_the_lowest_taylor_scores():
    spec = get_spec("mnist-resnet")
    layer = "layer1.0.conv1"
    config = PruneConfig(model=spec.name, method="unstructured", ratios={layer: 0.5}, criterion="taylor",
                         model_fingerprint=spec.fingerprint)
    assert (config.calibration_samples, config.seed) == (512, 0)
    result = apply(spec, config)
    pruned = dict(result.model.named_modules())[layer]
    zeroed = (pruned.weight_mask == 0).flatten()
    scores = weight_scores(spec.model, "taylor", calibration(spec, 512, 0), 0)[layer].flatten()
    n = scores.numel()
    k = round(0.5 * n)
    assert int(zeroed.sum()) == k == result.removed[layer]
    assert (pruned.weight.detach().flatten()[zeroed] == 0).all()
    ordered = torch.sort(scores).values
    assert ordered[k - 1] < ordered[k]  # no tie at the threshold: the lowest k are one exact set
    expected = torch.zeros(n, dtype=torch.bool)
    expected[torch.argsort(scores)[:k]] = True
    assert torch.equal(zeroed, expected)
    magnitude = torch.zeros(n, dtype=torch.bool)  # and the criterion mattered: not the L1 mask
    magnitude[torch.argsort(spec.model.get_submodule(layer).weight.detach().abs().flatten())[:k]] = True
    assert not torch.equal(zeroed, magnitude)
    assert fingerprint(spec.model) == spec.fingerprint

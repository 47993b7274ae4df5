"""Budget solver: every strategy meets FLOPs / params / size targets on mnist-resnet by core.estimate's own
figures, uniform is minimal, the sensitivity strategy spares sensitive units, bounds and locks hold, the drop
curves are clean, targets are validated, and the global threshold is one threshold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from core.allocate import (
    MAX_RATIO,
    STRATEGIES,
    Bounds,
    Budget,
    Target,
    allocate,
    drop_curves,
    predicted_drop,
)
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.importance import channel_scores, weight_scores
from core.prune import calibration
from tests.conftest import get_spec

GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))
_COSTS: dict[tuple[str, str], object] = {}
_SCORES: dict[tuple[str, str], dict] = {}


def _cost_model(name: str, method: str = "channel"):
    if (name, method) not in _COSTS:
        spec = get_spec(name)
        _COSTS[name, method] = build_cost_model(spec.model, spec.example_input, method)
    return _COSTS[name, method]


def _scores(name: str, method: str = "channel") -> dict:
    if (name, method) not in _SCORES:
        spec = get_spec(name)
        calib = calibration(spec, 64, 0)
        _SCORES[name, method] = (channel_scores(spec.model, spec.example_input, "l1", calib, 0)
                                 if method == "channel" else weight_scores(spec.model, "l1", calib, 0))
    return _SCORES[name, method]


def _units(name: str, method: str = "channel") -> list[str]:
    return [u.name for u in _cost_model(name, method).units]


def _table(curves: dict[str, callable], grid: tuple[float, ...] = GRID) -> pd.DataFrame:
    """A synthetic sensitivity table: accuracy_drop = curve(ratio) per unit (plus the other sweep columns)."""
    rows = [{"model": "synthetic", "granularity": "channel", "criterion": "l1", "unit": u, "ratio": r,
             "accuracy": 0.99 - f(r), "loss": 0.1, "accuracy_drop": f(r), "loss_increase": 0.0,
             "params_removed": 0, "flops_removed": 0, "base_accuracy": 0.99, "base_loss": 0.1}
            for u, f in curves.items() for r in grid]
    return pd.DataFrame(rows)


def _graded_table(name: str) -> pd.DataFrame:
    """Different, smooth curves per unit: unit i loses (i + 1) * 0.02 * ratio^2."""
    return _table({u: (lambda r, k=i: (k + 1) * 0.02 * r * r) for i, u in enumerate(_units(name))})


def _meets(name: str, target: Target, ratios: dict[str, float], method: str = "channel") -> bool:
    """Computed here from core.estimate, independently of core.allocate.Budget."""
    cm = _cost_model(name, method)
    base, est = cm.estimate({}), cm.estimate(ratios)
    if target.kind == "flops":
        return est["flops"] <= base["flops"] / target.value
    if target.kind == "params":
        return est["params"] <= base["params"] / target.value
    if target.kind == "size_mb":
        return est["size_bytes"] / 1e6 <= target.value
    raise AssertionError(target)


def _resnet_targets() -> list[Target]:
    base = _cost_model("mnist-resnet").estimate({})
    return [Target("flops", 2), Target("flops", 3), Target("params", 2), Target("size_mb", base["size_bytes"] / 2e6)]


TARGET_IDS = ["flops-2", "flops-3", "params-2", "size-half"]


# ---- every strategy meets every target ------------------------------------------------------------------


@pytest.mark.parametrize("target_index", range(4), ids=TARGET_IDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_meets_the_target(strategy, target_index):
    name = "mnist-resnet"
    target = _resnet_targets()[target_index]
    cm = _cost_model(name)
    result = allocate(strategy, cm, target, table=_graded_table(name), scores=_scores(name))
    assert result.strategy == strategy and result.target == target
    assert result.met
    assert set(result.ratios) == set(_units(name))
    assert all(0.0 <= r <= MAX_RATIO == 0.9 for r in result.ratios.values()), result.ratios
    assert result.estimate == cm.estimate(result.ratios)
    assert _meets(name, target, result.ratios), (result.ratios, result.estimate)
    assert result.predicted_drop == pytest.approx(predicted_drop(drop_curves(_graded_table(name)), result.ratios))
    assert any(r > 0 for r in result.ratios.values())


def test_without_a_table_no_drop_is_predicted():
    result = allocate("uniform", _cost_model("mnist-resnet"), Target("flops", 2))
    assert result.met and result.predicted_drop is None


def test_strategy_inputs_are_required():
    cm = _cost_model("mnist-resnet")
    with pytest.raises(PruneLabError, match="scores"):
        allocate("global", cm, Target("flops", 2))
    with pytest.raises(PruneLabError, match="sensitivity table"):
        allocate("sensitivity", cm, Target("flops", 2))
    with pytest.raises(PruneLabError, match="strategy"):
        allocate("random", cm, Target("flops", 2))
    partial = _graded_table("mnist-resnet")
    partial = partial[partial["unit"] != "stem.0"]
    with pytest.raises(PruneLabError, match="stem.0"):
        allocate("sensitivity", cm, Target("flops", 2), table=partial)


# ---- uniform -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_index", range(4), ids=TARGET_IDS)
def test_uniform_is_one_minimal_ratio(target_index):
    name = "mnist-resnet"
    target = _resnet_targets()[target_index]
    result = allocate("uniform", _cost_model(name), target)
    values = set(result.ratios.values())
    assert len(values) == 1, result.ratios
    (ratio,) = values
    assert 0 < ratio <= MAX_RATIO
    assert _meets(name, target, result.ratios)
    lower = {u: ratio - 0.01 for u in result.ratios}
    assert not _meets(name, target, lower), ratio


# ---- sensitivity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sensitive", ["stem.0", "layer3.0.conv1"])
def test_sensitivity_spares_the_sensitive_unit(sensitive):
    name = "mnist-resnet"
    curves = {u: (lambda r: 0.001 * r) for u in _units(name)}
    curves[sensitive] = lambda r: 0.8 * r
    table = _table(curves)
    cm = _cost_model(name)
    result = allocate("sensitivity", cm, Target("flops", 2), table=table)
    assert result.met
    assert result.ratios[sensitive] == min(result.ratios.values())
    assert result.ratios[sensitive] == 0.0, result.ratios  # the others can meet the target alone
    uniform = allocate("uniform", cm, Target("flops", 2), table=table)
    assert uniform.predicted_drop == pytest.approx(predicted_drop(drop_curves(table), uniform.ratios))
    assert result.predicted_drop <= uniform.predicted_drop
    assert result.predicted_drop < 0.01 < uniform.predicted_drop


def test_sensitivity_prefers_the_cheaper_curve_among_similar_units():
    """Two units with the same costs: the one whose curve is lower is cut at least as much."""
    name = "digits-mlp"
    table = _table({"fc1": lambda r: 0.5 * r, "fc2": lambda r: 0.01 * r})
    result = allocate("sensitivity", _cost_model(name), Target("params", 1.3), table=table)
    assert result.met
    assert result.ratios["fc2"] > result.ratios["fc1"]


# ---- bounds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bounds_and_locks_hold(strategy):
    name = "mnist-resnet"
    bounds = Bounds(low={"layer3.0.conv1": 0.2, "layer2.1.conv1": 0.35}, high={"layer3.1.conv1": 0.1, "stem.0": 0.3},
                    locked={"layer2.0.conv1": 0.4, "layer1.0.conv1": 0.0, "layer3.0.conv2": 0.123})
    result = allocate(strategy, _cost_model(name), Target("flops", 2), bounds, _graded_table(name), _scores(name))
    assert result.met
    r = result.ratios
    assert r["layer2.0.conv1"] == 0.4 and r["layer1.0.conv1"] == 0.0 and r["layer3.0.conv2"] == 0.123
    assert r["layer3.0.conv1"] >= 0.2 and r["layer2.1.conv1"] >= 0.35
    assert r["layer3.1.conv1"] <= 0.1 and r["stem.0"] <= 0.3
    assert all(0 <= v <= MAX_RATIO for v in r.values())
    assert _meets(name, Target("flops", 2), r)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bad_bounds_are_refused(strategy):
    name = "mnist-resnet"
    cm, table, scores = _cost_model(name), _graded_table(name), _scores(name)
    with pytest.raises(PruneLabError, match="nope"):
        allocate(strategy, cm, Target("flops", 2), Bounds(locked={"nope": 0.5}), table, scores)
    with pytest.raises(PruneLabError, match="layer9"):
        allocate(strategy, cm, Target("flops", 2), Bounds(high={"layer9": 0.5}), table, scores)
    with pytest.raises(PruneLabError, match="stem.0"):
        allocate(strategy, cm, Target("flops", 2), Bounds(low={"stem.0": 0.6}, high={"stem.0": 0.4}), table, scores)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_impossible_target_is_not_met(strategy):
    name = "mnist-resnet"
    cm = _cost_model(name)
    high = {u: 0.5 for u in _units(name)}
    result = allocate(strategy, cm, Target("flops", 1000), Bounds(high=high), _graded_table(name), _scores(name))
    assert not result.met
    assert not _meets(name, Target("flops", 1000), result.ratios)
    assert all(0 <= r <= 0.5 for r in result.ratios.values())
    # the closest it can get: as cheap as cutting everything to the bound
    assert result.estimate["flops"] == cm.estimate(high)["flops"], result.ratios


# ---- drop curves ---------------------------------------------------------------------------------------


def _noisy() -> pd.DataFrame:
    table = pd.DataFrame({
        "unit": ["a"] * 4 + ["b"] * 3,
        "ratio": [0.3, 0.1, 0.4, 0.2, 0.2, 0.1, 0.3],
        "accuracy_drop": [0.10, 0.05, 0.08, 0.02, 0.03, -0.01, -0.02],
    })
    return table.sample(frac=1.0, random_state=0)  # any row order


def test_drop_curves_start_at_zero_and_never_fall():
    curves = drop_curves(_noisy())
    assert set(curves) == {"a", "b"}
    ra, da = curves["a"]
    np.testing.assert_allclose(ra, [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(da, [0.0, 0.05, 0.05, 0.10, 0.10])  # 0.02 after 0.05 and 0.08 after 0.10 lifted
    rb, db = curves["b"]
    np.testing.assert_allclose(rb, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(db, [0.0, 0.0, 0.03, 0.03])  # negative drops clipped to 0
    for r, d in curves.values():
        assert r[0] == 0 and d[0] == 0
        assert (np.diff(r) > 0).all() and (np.diff(d) >= 0).all() and (d >= 0).all()


def test_drop_curves_of_a_real_sweep_are_clean():
    rng = np.random.default_rng(0)
    noisy = _table({u: (lambda r, k=i: 0.05 * k * r) for i, u in enumerate(_units("mnist-resnet"))})
    noisy["accuracy_drop"] += rng.normal(0, 0.02, len(noisy))
    for r, d in drop_curves(noisy).values():
        assert r[0] == 0 and d[0] == 0 and (np.diff(d) >= 0).all() and (d >= 0).all()


def test_predicted_drop_interpolates_linearly():
    curves = drop_curves(_noisy())
    assert predicted_drop(curves, {"a": 0.25}) == pytest.approx(0.075)  # half-way from 0.05 to 0.10
    assert predicted_drop(curves, {"a": 0.05}) == pytest.approx(0.025)  # half-way from (0, 0) to (0.1, 0.05)
    assert predicted_drop(curves, {"a": 0.3}) == pytest.approx(0.10)
    assert predicted_drop(curves, {"b": 0.15}) == pytest.approx(0.015)
    assert predicted_drop(curves, {"a": 0.25, "b": 0.15}) == pytest.approx(0.09)  # the sum of single-unit drops
    assert predicted_drop(curves, {"a": 0.0, "b": 0.0}) == 0.0
    assert predicted_drop(curves, {"a": 0.9}) == pytest.approx(0.10)  # beyond the grid: the last measured drop
    assert predicted_drop(curves, {"zzz": 0.5}) == 0.0  # a unit without a curve predicts nothing


# ---- targets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, value, fragment", [
    ("energy", 2.0, "unknown target"),
    ("flops", 0.0, "positive"),
    ("flops", -2.0, "positive"),
    ("params", math.nan, "positive"),
    ("size_mb", math.inf, "positive"),
    ("size_mb", 0.0, "positive"),
    ("latency_ms", -1.0, "positive"),
    ("flops", 0.5, "at least 1"),
    ("params", 0.99, "at least 1"),
], ids=["unknown", "zero", "negative", "nan", "inf", "size-0", "latency-negative", "flops-factor-0.5",
        "params-factor-0.99"])
def test_bad_targets_are_refused(kind, value, fragment):
    with pytest.raises(PruneLabError, match=fragment):
        Target(kind, value)


def test_small_size_and_latency_values_are_fine():
    assert Target("size_mb", 0.01).value == 0.01
    assert Target("latency_ms", 0.5).value == 0.5
    assert Target("flops", 1).value == 1


def test_unstructured_size_target_is_refused():
    cm = _cost_model("digits-mlp", "unstructured")
    with pytest.raises(PruneLabError, match="masks do not shrink"):
        allocate("uniform", cm, Target("size_mb", 0.01))


@pytest.mark.parametrize("base_latency", [None, 0.0])
def test_latency_target_needs_the_baseline_latency(base_latency):
    with pytest.raises(PruneLabError, match="latency"):
        allocate("uniform", _cost_model("mnist-resnet"), Target("latency_ms", 1.0), base_latency_ms=base_latency)


@pytest.mark.parametrize("method", ["channel", "unstructured"])
def test_latency_estimate_scales_with_flops_kept(method):
    name = "mnist-resnet"
    cm = _cost_model(name, method)
    flops_key = "flops" if method == "channel" else "sparse_flops"
    budget = Budget(cm, Target("latency_ms", 4.0), base_latency_ms=10.0)
    base = cm.estimate({})
    ratios = {u: 0.3 + 0.05 * (i % 5) for i, u in enumerate(_units(name, method))}
    assert budget.cost({}) == pytest.approx(10.0)
    assert budget.cost(ratios) == pytest.approx(10.0 * cm.estimate(ratios)[flops_key] / base[flops_key])
    result = allocate("uniform", cm, Target("latency_ms", 4.0), base_latency_ms=10.0)
    assert result.met
    assert 10.0 * result.estimate[flops_key] / base[flops_key] <= 4.0 + 1e-9


def test_unstructured_targets_count_non_zero_weights():
    name = "digits-mlp"
    cm = _cost_model(name, "unstructured")
    for target in (Target("flops", 2), Target("params", 2)):
        result = allocate("uniform", cm, target)
        assert result.met
        base, est = cm.estimate({}), result.estimate
        key = "sparse_flops" if target.kind == "flops" else "nonzero_params"
        assert est[key] <= base[key] / 2
        assert est["params"] == base["params"]  # masks keep the dense shapes


# ---- global threshold ----------------------------------------------------------------------------------


def test_global_cuts_the_unit_whose_scores_are_all_lower():
    name = "digits-mlp"
    cm = _cost_model(name)
    gen = torch.Generator().manual_seed(0)
    scores = {"fc1": torch.rand(128, generator=gen), "fc2": 10 + torch.rand(64, generator=gen)}
    result = allocate("global", cm, Target("flops", 2), scores=scores)
    assert result.met
    assert result.ratios["fc1"] > result.ratios["fc2"] == 0.0
    # swapped: now fc2 holds the low scores
    scores = {"fc1": 10 + torch.rand(128, generator=gen), "fc2": torch.rand(64, generator=gen)}
    result = allocate("global", cm, Target("params", 1.2), scores=scores)
    assert result.met
    assert result.ratios["fc2"] > result.ratios["fc1"] == 0.0


RESOLUTION = 0.01  # core.allocate may round a global ratio up to the sliders' resolution


def _threshold_interval(sorted_scores: np.ndarray, ratio: float, high: float) -> tuple[float, float]:
    """Thresholds t whose share of scores below t could have become ratio: within one weight of ratio, or up to
    RESOLUTION below it (rounded up); any share above `high` if ratio is at the bound. Returns (low, high]."""
    n = len(sorted_scores)
    padded = np.concatenate([[-np.inf], sorted_scores, [np.inf]])  # padded[c] = the c-th smallest (1-based)
    lo_count = max(math.ceil((ratio - RESOLUTION) * n - 1), 0)
    hi_count = n if ratio >= high else min(math.floor(ratio * n + 1), n)
    # count(s < t) = c  <=>  s_(c) < t <= s_(c+1)
    return padded[lo_count], padded[hi_count + 1]


def _one_threshold_explains(name: str, ratios: dict[str, float]) -> bool:
    lows, highs = [], []
    for unit, ratio in ratios.items():
        flat = np.sort(np.abs(get_spec(name).model.get_submodule(unit).weight.detach().numpy()).ravel())
        low, high = _threshold_interval(flat, ratio, MAX_RATIO)
        lows.append(low)
        highs.append(high)
    return max(lows) < min(highs)


@pytest.mark.parametrize("target", [Target("flops", 2), Target("params", 3)], ids=["flops-2", "params-3"])
def test_global_unstructured_is_one_threshold(target):
    name = "digits-mlp"
    cm = _cost_model(name, "unstructured")
    scores = _scores(name, "unstructured")
    assert set(scores) == {"fc1", "fc2", "fc3"}
    for unit, s in scores.items():  # l1 scores are |w|
        np.testing.assert_allclose(s.numpy(), np.abs(get_spec(name).model.get_submodule(unit).weight.detach().numpy()))
    result = allocate("global", cm, target, scores=scores)
    assert result.met
    assert len(set(result.ratios.values())) > 1  # not uniform: the layers' magnitudes differ
    assert _one_threshold_explains(name, result.ratios), result.ratios
    # the check has teeth: the uniform allocation of the same target is not one threshold
    assert not _one_threshold_explains(name, allocate("uniform", cm, target).ratios)

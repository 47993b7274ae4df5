"""Sensitivity sweeps: every masked grid point equals a physically pruned copy (channel and unstructured, every
sample model), the shared model is left untouched, sweeps are cached by their SweepSpec, the table's columns and
cost figures, the acceptance figure on mnist-resnet, and bad sweep specs / tables refused with a clear message."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import core.sensitivity as sensitivity
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.evaluate import evaluate
from core.finetune import recalibrate_batchnorm
from core.importance import channel_scores, weight_scores
from core.methods import units
from core.prune.channel import apply_channel
from core.prune.unstructured import apply_unstructured
from core.sensitivity import COLUMNS, PERPLEXITY_COLUMNS, SweepSpec, cache_path, read_table, subsets, sweep
from core.spec import ModelSpec, fingerprint
from tests.conftest import get_spec

SMALL = {"grid": (0.3, 0.6), "eval_samples": 200, "calibration_samples": 128}
# A language model's evaluation sample is a 128-token sequence (one forward of tiny-lm on 200 of them took ~2.2 s
# on one thread; its small sweep and physical checks ran ~70 such evaluations, ~220 s). The exactness checks
# compare the sweep with the physically pruned copy on the same sequences, so 48 sequences (6,144 tokens) test the
# same equality; the accuracy tolerance below stays the absolute one of 200 samples.
SMALL_LM_EVAL_SAMPLES = 48
# a masked point and the physically pruned copy may differ by one of 200 classification samples' flip (float
# rounding at an argmax tie); fixed here so that a smaller language-model subset does not loosen it
ACCURACY_TOLERANCE = 1 / SMALL["eval_samples"]
GRANULARITIES = ("channel", "unstructured")
UNSTRUCTURED_LAYERS_PER_MODEL = 8  # physical checks per model (unstructured): spread over the network

_TABLES: dict[tuple[str, str], pd.DataFrame] = {}
_COSTS: dict[tuple[str, str], object] = {}


def _small_spec(spec: ModelSpec, granularity: str) -> SweepSpec:
    """The small sweep of the exactness and table tests (fewer evaluation sequences for a language model)."""
    lm = spec.split.test_y.dim() > 1  # next-token targets: one label per token
    return SweepSpec(spec.name, spec.fingerprint, granularity,
                     **SMALL | ({"eval_samples": SMALL_LM_EVAL_SAMPLES} if lm else {}))


def _small_sweep(spec: ModelSpec, granularity: str) -> pd.DataFrame:
    """The small sweep of spec (computed once per model and granularity, shared by several tests)."""
    if (spec.name, granularity) not in _TABLES:
        _TABLES[spec.name, granularity] = sweep(spec, _small_spec(spec, granularity), use_cache=False)
    return _TABLES[spec.name, granularity]


def _cost_model(spec: ModelSpec, method: str):
    if (spec.name, method) not in _COSTS:
        _COSTS[spec.name, method] = build_cost_model(spec.model, spec.example_input, method)
    return _COSTS[spec.name, method]


def _row(table: pd.DataFrame, unit: str, ratio: float) -> pd.Series:
    rows = table[(table["unit"] == unit) & np.isclose(table["ratio"], ratio)]
    assert len(rows) == 1, (unit, ratio, len(rows))
    return rows.iloc[0]


def _differs(measured: dict, row: pd.Series) -> bool:
    """Whether a physically pruned copy's figures differ from the sweep's row (loss within 1e-4 absolute)."""
    return (abs(measured["accuracy"] - row["accuracy"]) > ACCURACY_TOLERANCE
            or abs(measured["loss"] - row["loss"]) > 1e-4)


def _spread(items: list, n: int) -> list:
    """At most n items, evenly spread from first to last."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


@pytest.fixture(scope="module")
def resnet_default() -> pd.DataFrame:
    """The default channel sweep of mnist-resnet (9 groups x 9 ratios on 1000 images): run once per module."""
    spec = get_spec("mnist-resnet")
    return sweep(spec, SweepSpec(spec.name, spec.fingerprint, "channel"))


# ---- exactness against physical pruning ----------------------------------------------------------------


def test_channel_sweep_equals_physical_pruning(spec):
    assert not _channel_mismatches(spec)


@pytest.mark.parametrize("kind", ["convnext", "vit", "llama-gqa", "gpt2", "transformer-encoder", "bert", "roberta",
                                  "distilbert", "swin"])
def test_channel_sweep_of_other_peoples_transformers_equals_physical_pruning(kind):
    """LayerNorm in ConvNeXt's channels-first layout, HF attention (whose head widths are never channel-cut),
    GQA and GPT-2's packed projections: every masked point equals the physically cut copy."""
    from sample_models.hf_zoo import build

    assert not _channel_mismatches(build(kind))


def _channel_mismatches(spec: ModelSpec) -> list:
    """(unit, ratio, measured, swept accuracy, swept loss) where a channel sweep point differs from the model
    physically cut at that unit and ratio."""
    sweep_spec = _small_spec(spec, "channel")
    table = _small_sweep(spec, "channel")
    calib, ex, ey = subsets(spec, sweep_spec)
    scores = channel_scores(spec.model, spec.example_input, "l1", calib, 0)
    mismatches = []
    for unit in units(spec.model, spec.example_input, "channel"):
        for ratio in sweep_spec.grid:
            model = copy.deepcopy(spec.model)
            apply_channel(model, {unit.name: ratio}, spec.example_input, scores)
            recalibrate_batchnorm(model, calib.x)
            measured = evaluate(model.eval(), ex, ey)
            row = _row(table, unit.name, ratio)
            if _differs(measured, row):
                mismatches.append((unit.name, ratio, measured, row["accuracy"], row["loss"]))
    return mismatches


def test_unstructured_sweep_equals_physical_masking(spec):
    sweep_spec = _small_spec(spec, "unstructured")
    table = _small_sweep(spec, "unstructured")
    calib, ex, ey = subsets(spec, sweep_spec)
    scores = weight_scores(spec.model, "l1", calib, 0)
    layers = _spread([u.name for u in units(spec.model, spec.example_input, "unstructured")],
                     UNSTRUCTURED_LAYERS_PER_MODEL)
    mismatches = []
    for layer in layers:
        for ratio in sweep_spec.grid:
            model = copy.deepcopy(spec.model)
            apply_unstructured(model, {layer: ratio}, scores)
            measured = evaluate(model.eval(), ex, ey)
            row = _row(table, layer, ratio)
            if _differs(measured, row):
                mismatches.append((layer, ratio, measured, row["accuracy"], row["loss"]))
    assert not mismatches, mismatches


def test_subsets_are_the_pruners_calibration_and_disjoint_training_images():
    from core.prune import calibration

    spec = get_spec("digits-mlp")
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, "channel", eval_samples=300, calibration_samples=100, seed=4)
    calib, ex, ey = subsets(spec, sweep_spec)
    expected = calibration(spec, 100, 4)
    assert torch.equal(calib.x, expected.x) and torch.equal(calib.y, expected.y)
    assert len(ex) == len(ey) == 300
    train = {tuple(row.tolist()): i for i, row in enumerate(spec.split.train_x)}
    cal_idx = {train[tuple(row.tolist())] for row in calib.x}
    ev_idx = {train[tuple(row.tolist())] for row in ex}
    assert len(cal_idx) == 100 and len(ev_idx) == 300 and not cal_idx & ev_idx
    test_rows = {tuple(row.tolist()) for row in spec.split.test_x}
    assert not any(tuple(row.tolist()) in test_rows for row in ex)  # the test split stays untouched
    assert torch.equal(ey, spec.split.train_y[[train[tuple(row.tolist())] for row in ex]])  # labels match images


# ---- the shared model --------------------------------------------------------------------------------


def _hooks(model: nn.Module) -> list[tuple[str, str, int]]:
    found = []
    for name, m in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_state_dict_hooks", "_load_state_dict_pre_hooks"):
            hooks = getattr(m, kind, None)
            if hooks:
                found.append((name, kind, len(hooks)))
    return found


def _global_hooks() -> tuple[int, ...]:
    module = torch.nn.modules.module
    return tuple(len(getattr(module, n, {})) for n in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                       "_global_backward_hooks", "_global_backward_pre_hooks"))


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_sweep_leaves_the_model_untouched(spec, granularity):
    before = fingerprint(spec.model)
    hooks, global_hooks = _hooks(spec.model), _global_hooks()
    flags = [(n, p.requires_grad, p.grad) for n, p in spec.model.named_parameters()]
    training = spec.model.training
    sweep(spec, SweepSpec(spec.name, spec.fingerprint, granularity, grid=(0.5,), eval_samples=50,
                          calibration_samples=64), use_cache=False)
    assert fingerprint(spec.model) == before == spec.fingerprint
    assert _hooks(spec.model) == hooks == []
    assert _global_hooks() == global_hooks
    assert [(n, p.requires_grad, p.grad) for n, p in spec.model.named_parameters()] == flags
    assert spec.model.training == training


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_progress_counts_every_grid_point(granularity):
    spec = get_spec("digits-mlp")
    calls = []
    table = sweep(spec, SweepSpec(spec.name, spec.fingerprint, granularity, grid=(0.2, 0.4, 0.6), eval_samples=50,
                                  calibration_samples=32), progress=lambda done, total: calls.append((done, total)),
                  use_cache=False)
    total = len(table)
    assert calls == [(i, total) for i in range(1, total + 1)]


# ---- caching -----------------------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch, tmp_path) -> list[int]:
    """A private, empty cache, and a counter of the evaluations sweep() runs."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    calls = [0]
    real = sensitivity.evaluate

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sensitivity, "evaluate", counting)
    return calls


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_second_identical_sweep_comes_from_the_cache(counted, granularity):
    spec = get_spec("digits-mlp")
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, granularity, grid=(0.25, 0.5), eval_samples=150,
                           calibration_samples=100, seed=3)
    assert not cache_path(sweep_spec).exists()
    first = sweep(spec, sweep_spec)
    assert counted[0] > 0
    assert cache_path(sweep_spec).is_file()

    counted[0] = 0
    second = sweep(spec, sweep_spec)
    assert counted[0] == 0
    pd.testing.assert_frame_equal(second, first)

    again = sweep(spec, sweep_spec, use_cache=False)
    assert counted[0] > 0
    pd.testing.assert_frame_equal(again, first)  # the same figures, measured again

    counted[0] = 0
    sweep(spec, dataclasses.replace(sweep_spec, eval_samples=151))
    assert counted[0] > 0  # another spec does not reuse this cache entry


def test_cache_lives_under_prunelab_home(counted, tmp_path):
    spec = get_spec("digits-mlp")
    path = cache_path(SweepSpec(spec.name, spec.fingerprint, "channel"))
    assert path.parent == tmp_path / "home" / "cache" / "sensitivity"
    assert path.suffix == ".csv"


def test_every_field_changes_the_key():
    spec = get_spec("digits-mlp")
    base = SweepSpec(spec.name, spec.fingerprint, "channel", "l1", (0.3, 0.6), 200, 128, 0)
    variants = {
        "model": dataclasses.replace(base, model="mnist-resnet"),
        "fingerprint": dataclasses.replace(base, fingerprint="0" * 16),
        "granularity": dataclasses.replace(base, granularity="unstructured"),
        "criterion": dataclasses.replace(base, criterion="l2"),
        "grid": dataclasses.replace(base, grid=(0.3, 0.7)),
        "grid-shorter": dataclasses.replace(base, grid=(0.3,)),
        "eval_samples": dataclasses.replace(base, eval_samples=201),
        "calibration_samples": dataclasses.replace(base, calibration_samples=129),
        "seed": dataclasses.replace(base, seed=1),
    }
    keys = {name: v.key() for name, v in variants.items()}
    assert base.key() == SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.3, 0.6), eval_samples=200,
                                   calibration_samples=128).key()  # deterministic
    for name, key in keys.items():
        assert key != base.key(), name
        assert cache_path(variants[name]) != cache_path(base), name
    assert len(set(keys.values())) == len(keys)


# ---- the table ---------------------------------------------------------------------------------------


def _check_table(spec: ModelSpec, table: pd.DataFrame, sweep_spec: SweepSpec) -> None:
    method = sweep_spec.granularity
    lm = spec.split.test_y.dim() > 1  # a language model's table adds its perplexity, its increase and base
    assert list(table.columns) == COLUMNS + (PERPLEXITY_COLUMNS if lm else [])
    names = [u.name for u in units(spec.model, spec.example_input, method)]
    assert list(dict.fromkeys(table["unit"])) == names
    assert len(table) == len(names) * len(sweep_spec.grid)
    pairs = list(zip(table["unit"], table["ratio"], strict=True))
    assert len(set(pairs)) == len(pairs)  # one row per (unit, ratio)
    assert sorted(pairs) == sorted((n, r) for n in names for r in sweep_spec.grid)
    assert set(table["model"]) == {spec.name}
    assert set(table["granularity"]) == {method}
    assert set(table["criterion"]) == {sweep_spec.criterion}

    assert table["base_accuracy"].nunique() == 1 and table["base_loss"].nunique() == 1
    np.testing.assert_allclose(table["accuracy_drop"], table["base_accuracy"] - table["accuracy"], atol=1e-12)
    np.testing.assert_allclose(table["loss_increase"], table["loss"] - table["base_loss"], atol=1e-12)
    assert table["accuracy"].between(0, 1).all()
    assert (table["loss"] >= 0).all()

    cost_model = _cost_model(spec, method)
    base = cost_model.estimate({})
    params_key, flops_key = ("params", "flops") if method == "channel" else ("nonzero_params", "sparse_flops")
    for row in table.itertuples():
        est = cost_model.estimate({row.unit: row.ratio})
        assert row.params_removed == base[params_key] - est[params_key], (row.unit, row.ratio)
        assert row.flops_removed == base[flops_key] - est[flops_key], (row.unit, row.ratio)
    for unit, rows in table.groupby("unit", sort=False):
        rows = rows.sort_values("ratio")
        assert (rows["params_removed"] > 0).all(), unit
        assert rows["params_removed"].is_monotonic_increasing, unit
        assert rows["params_removed"].diff().dropna().gt(0).all(), unit  # strictly: every grid step cuts more
        assert rows["flops_removed"].is_monotonic_increasing, unit


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_table_columns_rows_and_costs(spec, granularity):
    _check_table(spec, _small_sweep(spec, granularity), _small_spec(spec, granularity))


def test_default_table_of_mnist_resnet(resnet_default):
    spec = get_spec("mnist-resnet")
    _check_table(spec, resnet_default, SweepSpec(spec.name, spec.fingerprint, "channel"))
    assert len(resnet_default) == 9 * 9


def test_channel_accuracy_falls_as_more_is_cut(resnet_default):
    """Not a law, but on average over groups a larger cut hurts at least as much."""
    by_ratio = resnet_default.groupby("ratio")["accuracy"].mean()
    assert by_ratio.iloc[0] >= by_ratio.iloc[-1]
    assert by_ratio.iloc[0] > 0.9


def test_acceptance_mild_cuts_keep_accuracy(resnet_default):
    mild = resnet_default[resnet_default["ratio"] <= 0.3 + 1e-9]
    assert len(mild) == 9 * 3
    fraction = float((mild["accuracy"] > 0.9).mean())
    print(f"mnist-resnet, default channel sweep: {fraction:.1%} of (group, ratio <= 0.3) cells above 0.9 accuracy")
    assert fraction >= 0.9, mild[["unit", "ratio", "accuracy"]].to_string()


# ---- bad specs and tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("changes, fragment", [
    ({"granularity": "foo"}, "granularity"),
    ({"grid": (0.0, 0.5)}, "between 0 and 1"),
    ({"grid": (0.5, 1.0)}, "between 0 and 1"),
    ({"grid": ()}, "between 0 and 1"),
    ({"grid": (float("nan"),)}, "between 0 and 1"),
    ({"grid": (-0.1,)}, "between 0 and 1"),
    ({"eval_samples": 0}, "eval_samples"),
    ({"calibration_samples": 0}, "calibration_samples"),
], ids=["granularity-foo", "grid-0", "grid-1", "grid-empty", "grid-nan", "grid-negative", "eval-0", "calib-0"])
def test_bad_sweep_spec_is_refused(changes, fragment):
    spec = get_spec("digits-mlp")
    fields = {"model": spec.name, "fingerprint": spec.fingerprint, "granularity": "channel"} | changes
    with pytest.raises(PruneLabError, match=fragment):
        SweepSpec(**fields)


def test_sweep_for_other_weights_or_model_is_refused():
    spec = get_spec("digits-mlp")
    with pytest.raises(PruneLabError, match="another model or other weights"):
        sweep(spec, SweepSpec(spec.name, "0" * 16, "channel", grid=(0.5,), eval_samples=10))
    other = get_spec("mnist-resnet")
    with pytest.raises(PruneLabError, match="another model or other weights"):
        sweep(spec, SweepSpec(other.name, other.fingerprint, "channel", grid=(0.5,), eval_samples=10))


def test_no_images_left_for_evaluation_is_refused():
    spec = get_spec("digits-mlp")
    too_many = len(spec.split.train_x)
    with pytest.raises(PruneLabError, match="no training images left"):
        sweep(spec, SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.5,), calibration_samples=too_many),
              use_cache=False)


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory) -> Path:
    """A genuine sensitivity CSV of digits-mlp."""
    spec = get_spec("digits-mlp")
    table = sweep(spec, SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.25, 0.5), eval_samples=100,
                                  calibration_samples=64))
    path = tmp_path_factory.mktemp("tables") / "digits.csv"
    table.to_csv(path, index=False)
    return path


def test_read_table_accepts_a_sweep_csv(digits_csv):
    table = read_table(digits_csv, "digits-mlp")
    assert list(table.columns) == COLUMNS and len(table) == 4
    assert read_table(digits_csv) is not None  # no model check asked for


@pytest.mark.parametrize("content", [
    b"\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x00",
    b"",
    "{header}\n{row}\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
    '{header}\n{row}\n"digits-mlp,channel,l1\n',
], ids=["binary", "empty", "ragged", "unclosed-quote"])
def test_read_table_refuses_a_corrupt_csv(digits_csv, tmp_path, content):
    path = tmp_path / "corrupt.csv"
    if isinstance(content, str):
        header, row = digits_csv.read_text().splitlines()[:2]
        content = content.format(header=header, row=row).encode()
    path.write_bytes(content)
    with pytest.raises(PruneLabError, match="cannot read sensitivity table") as info:
        read_table(path, "digits-mlp")
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value).strip()


def test_read_table_refuses_a_truncated_csv(digits_csv, tmp_path):
    text = digits_csv.read_text()
    path = tmp_path / "truncated.csv"
    path.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(PruneLabError):
        read_table(path, "digits-mlp")


def test_read_table_refuses_non_numeric_figures(digits_csv, tmp_path):
    table = pd.read_csv(digits_csv)
    table["ratio"] = table["ratio"].astype(str)
    table.loc[0, "ratio"] = "abc"
    path = tmp_path / "text.csv"
    table.to_csv(path, index=False)
    with pytest.raises(PruneLabError):
        read_table(path, "digits-mlp")


def test_read_table_refuses_a_missing_file(tmp_path):
    with pytest.raises(PruneLabError, match="cannot read sensitivity table"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(PruneLabError, match="cannot read sensitivity table"):
        read_table(tmp_path)  # a directory


def test_read_table_refuses_a_csv_without_the_columns(digits_csv, tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"layer": ["fc1"], "score": [0.5]}).to_csv(path, index=False)
    with pytest.raises(PruneLabError, match="not a PruneLab sensitivity table") as info:
        read_table(path)
    assert "accuracy_drop" in str(info.value) and "unit" in str(info.value)

    path = tmp_path / "no-drop.csv"
    pd.read_csv(digits_csv).drop(columns=["accuracy_drop"]).to_csv(path, index=False)
    with pytest.raises(PruneLabError, match="missing: accuracy_drop"):
        read_table(path, "digits-mlp")

    path = tmp_path / "header-only.csv"
    path.write_text(digits_csv.read_text().splitlines()[0] + "\n")
    with pytest.raises(PruneLabError, match="not a PruneLab sensitivity table"):
        read_table(path, "digits-mlp")


def test_read_table_refuses_a_table_for_another_model(digits_csv):
    with pytest.raises(PruneLabError, match="sensitivity table for digits-mlp, not mnist-resnet"):
        read_table(digits_csv, "mnist-resnet")


def test_read_table_refuses_mixed_tables(digits_csv, tmp_path):
    table = pd.read_csv(digits_csv)
    mixed = pd.concat([table, table.assign(criterion="l2")])
    path = tmp_path / "mixed.csv"
    mixed.to_csv(path, index=False)
    with pytest.raises(PruneLabError, match="mixes"):
        read_table(path, "digits-mlp")


def test_numeric_unit_names_survive_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    digits = get_spec("digits-mlp")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    spec = ModelSpec("seq", model, torch.zeros(1, 64), digits.split, "a bare Sequential", fingerprint(model))
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, "unstructured", grid=(0.5,), eval_samples=50,
                           calibration_samples=16)
    computed = sweep(spec, sweep_spec)
    assert list(computed["unit"]) == ["0", "2"]
    cached = sweep(spec, sweep_spec)
    assert list(cached["unit"]) == ["0", "2"]

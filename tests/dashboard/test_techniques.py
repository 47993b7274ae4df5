"""Every pruning granularity run through the Tune page (AppTest) and checked against core's own numbers:
the saved config holds what the controls set, and the measured model matches core's cost-model estimate.
An iterative schedule draws its trajectory on the Results page; a refused combination starts nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PruneConfig
from core.estimate import build_cost_model
from core.importance import REGISTRY
from core.importance.blocks import block_scores
from core.importance.heads import HEAD_CRITERIA
from core.plan import global_ratios
from core.prune import calibration
from core.prune.layers import rank_blocks
from dashboard.components.charts import trajectory_chart
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import chart_specs, open_app, wait_for_job


def choose(at: AppTest, method: str, epochs: int = 0) -> None:
    at.radio(key="method").set_value(method).run()
    at.number_input(key="epochs").set_value(epochs).run()


def apply_and_read(at: AppTest, home: Path) -> tuple[PruneConfig, dict]:
    """Click Apply, wait for the background run, return the saved run's config and metrics."""
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    (run_dir,) = (home / "runs").iterdir()
    return PruneConfig.load(run_dir / "config.json"), json.loads((run_dir / "metrics.json").read_text())


def estimate(model: str, method: str, ratios: dict[str, float]) -> dict[str, int]:
    spec = get_spec(model)
    return build_cost_model(spec.model, spec.example_input, method).estimate(ratios)


def test_unstructured_global_threshold_fills_sliders_and_runs(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "unstructured")
    at.slider(key="ratio-all|digits-mlp|unstructured").set_value(0.5).run()
    at.radio(key="scope").set_value("global threshold").run()
    at.button(key="fill-global").click().run()
    expected = global_ratios(get_spec("digits-mlp"), 0.5, "l1", 512, 0)
    assert len(set(expected.values())) > 1  # one threshold: layers lose different shares
    for layer, ratio in expected.items():
        assert at.slider(key=f"ratio|digits-mlp|unstructured|{layer}").value == pytest.approx(ratio)
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "unstructured" and config.ratios == pytest.approx(expected)
    pruned, base = metrics["pruned"], metrics["baseline"]
    assert pruned["nonzero_params"] == estimate("digits-mlp", "unstructured", config.ratios)["nonzero_params"]
    assert pruned["params"] == base["params"]  # masks keep the dense tensors


def test_nm_pattern_on_chosen_layers(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "nm")
    assert at.multiselect(key="nm-layers|digits-mlp").value == ["fc1", "fc2", "fc3"]  # core.plan.nm_ratios
    assert not [s for s in at.slider if s.key.startswith("ratio|")]  # the share is fixed: no sliders
    at.number_input(key="nm-n").set_value(1).run()
    at.multiselect(key="nm-layers|digits-mlp").set_value(["fc1", "fc2"]).run()
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "nm" and (config.pattern.n, config.pattern.m) == (1, 4)
    assert config.ratios == {"fc1": 0.75, "fc2": 0.75}
    assert metrics["pruned"]["nonzero_params"] == estimate("digits-mlp", "nm", config.ratios)["nonzero_params"]
    assert metrics["pruned"]["params"] == metrics["baseline"]["params"]


def test_block_pattern_with_sliders(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "block")
    at.number_input(key="block-rows").set_value(2).run()
    at.number_input(key="block-cols").set_value(2).run()
    at.slider(key="ratio-all|digits-mlp|block").set_value(0.5).run()
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "block" and config.pattern.block == (2, 2)
    assert config.ratios == {"fc1": 0.5, "fc2": 0.5, "fc3": 0.5}
    # half of every layer's 2x2 blocks is exactly half of its weights, as the estimate counts them
    assert metrics["pruned"]["nonzero_params"] == estimate("digits-mlp", "block", config.ratios)["nonzero_params"]


def test_channel_run_shrinks_as_estimated(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "channel")
    at.slider(key="ratio|digits-mlp|channel|fc2").set_value(0.5).run()
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "channel" and config.ratios == {"fc2": 0.5}
    expected = estimate("digits-mlp", "channel", config.ratios)
    assert metrics["pruned"]["params"] == expected["params"] < metrics["baseline"]["params"]
    assert metrics["pruned"]["flops"] == expected["flops"]


def test_neuron_run_shrinks_hidden_layers_as_estimated(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "neuron")
    assert "units" in at.slider(key="ratio|digits-mlp|neuron|fc1").help
    at.slider(key="ratio-all|digits-mlp|neuron").set_value(0.25).run()
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "neuron" and config.ratios == {"fc1": 0.25, "fc2": 0.25}
    expected = estimate("digits-mlp", "neuron", config.ratios)
    assert metrics["pruned"]["params"] == expected["params"] < metrics["baseline"]["params"]


def test_head_run_removes_heads_as_estimated(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-vit", tmp_path)
    assert any(s["data"][0]["type"] == "heatmap" and len(s["data"][0]["y"]) == 4 for s in chart_specs(at))
    choose(goto(at, "tune"), "head")
    assert at.selectbox(key="criterion").options == [REGISTRY[c].label for c in HEAD_CRITERIA]
    at.selectbox(key="criterion").set_value("taylor").run()
    key = "ratio|mnist-vit|head|blocks.0.attn"
    at.slider(key=key).set_value(0.5).run()
    at.slider(key="ratio|mnist-vit|head|blocks.2.attn").set_value(0.25).run()
    assert at.slider(key=key).label == "blocks.0.attn · keeps 2 of 4 heads"
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "head" and config.ratios == {"blocks.0.attn": 0.5, "blocks.2.attn": 0.25}
    assert config.criterion == "taylor"
    assert metrics["removed"] == {"blocks.0.attn": 2, "blocks.2.attn": 1}
    expected = estimate("mnist-vit", "head", config.ratios)
    base, pruned = metrics["baseline"], metrics["pruned"]
    assert base["params"] - pruned["params"] == base["params"] - expected["params"] > 0
    assert pruned["flops"] == expected["flops"]


def test_layer_run_removes_the_lowest_scoring_blocks(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-vit", tmp_path, "tune")
    choose(at, "layer")
    spec = get_spec("mnist-vit")
    blocks = ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    scores = block_scores(copy.deepcopy(spec.model), blocks, calibration(spec, 512, 0).x)
    at.number_input(key="drop-n|mnist-vit").set_value(2).run()
    at.button(key="drop-lowest").click().run()
    ticked = [b for b in blocks if at.checkbox(key=f"drop|mnist-vit|{b}").value]
    assert sorted(ticked) == sorted(rank_blocks(scores)[:2])
    config, metrics = apply_and_read(at, tmp_path)
    assert config.method == "layer" and config.ratios == {}
    assert list(config.remove_blocks) == rank_blocks(scores)[:2]  # in score order
    expected = estimate("mnist-vit", "layer", dict.fromkeys(config.remove_blocks, 1.0))
    assert metrics["pruned"]["params"] == expected["params"] < metrics["baseline"]["params"]
    assert metrics["pruned"]["flops"] == expected["flops"]


def test_iterative_schedule_draws_its_trajectory(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "unstructured", epochs=1)
    at.slider(key="ratio-all|digits-mlp|unstructured").set_value(0.6).run()
    at.radio(key="schedule").set_value("iterative").run()
    at.number_input(key="schedule-steps").set_value(2).run()
    at.checkbox(key="distill").check().run()
    at.number_input(key="distill-temperature").set_value(2.0).run()
    config, metrics = apply_and_read(at, tmp_path)
    assert (config.schedule.kind, config.schedule.steps, config.finetune.epochs) == ("iterative", 2, 1)
    assert config.finetune.distill and config.finetune.temperature == 2.0
    points = metrics["trajectory"]
    assert [p["phase"] for p in points] == ["baseline", "pruned", "fine-tuned", "pruned", "fine-tuned"]
    chart = next(s for s in chart_specs(goto(at, "results")) if s["data"][0].get("mode") == "lines")
    markers = [trace for trace in chart["data"] if trace.get("mode") == "markers"]
    assert sum(len(trace["x"]) for trace in markers) == len(points) == 5
    assert [trace["name"] for trace in markers] == ["baseline", "pruned", "fine-tuned"]
    assert any("iterative, 2 steps" in c.value and "distilled (T 2" in c.value for c in at.caption)


def test_trajectory_chart_without_accuracy_shows_flops_share():
    """A model without data has no accuracy: the chart plots the FLOPs share against the params share."""
    base = {"params": 100, "nonzero_params": 100, "flops": 1000, "accuracy": None}
    points = [{**base, "step": 0, "fraction": 0.0, "phase": "baseline"},
              {**base, "step": 1, "fraction": 0.5, "phase": "pruned", "params": 80, "flops": 600},
              {**base, "step": 2, "fraction": 1.0, "phase": "pruned", "params": 50, "flops": 300}]
    fig = trajectory_chart(points, mask=False)
    pruned = next(trace for trace in fig.data if trace.name == "pruned")
    assert list(pruned.x) == [80.0, 50.0] and list(pruned.y) == [60.0, 30.0]
    assert fig.layout.yaxis.title.text == "FLOPs (% of baseline)"


def test_refused_combination_shows_the_reason_and_starts_nothing(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "channel", epochs=1)
    at.radio(key="schedule").set_value("dynamic").run()
    assert any("dynamic schedule" in e.value for e in at.error)
    assert at.button(key="apply").disabled  # AppTest, like a browser, cannot click it
    at.run()
    assert not (tmp_path / "jobs").exists()
    assert not (tmp_path / "runs").exists()


def test_method_without_units_says_so_and_cannot_apply(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    choose(at, "head")
    assert any("has no attention modules" in i.value for i in at.info)
    assert at.button(key="apply").disabled

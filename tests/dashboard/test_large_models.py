"""Big models on the dashboard: the grouping, search, binning and aggregation functions (pure), then the
Tune page on ResNet-50 (AppTest): sliders grouped by stage in expanders, a search that narrows what is
drawn, bulk set and locks (kept by bulk set, "All layers" and the solver), estimates equal to core's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.estimate import build_cost_model
from dashboard.components.charts import importance_heatmap, sensitivity_heatmap
from dashboard.components.format import human
from dashboard.components.groups import filter_names, group_key, group_names, mean_ratio, settable
from dashboard.components.heat import bin_bounds, bin_row, group_table, heat_height, score_grid
from dashboard.components.sliders import slider_key
from tests.conftest import get_spec
from tests.dashboard.test_app import chart_specs, metric, open_app

MODEL = "resnet50"  # cheaper to load and measure than vit-s16; 37 channel groups in 5 stages
LAYER3 = {"layer3.0.conv3"} | {f"layer3.{b}.conv{c}" for b in range(6) for c in (1, 2)}


# ---- pure functions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "group"), [
    ("layer3.2.conv2", "layer3"), ("blocks.7.attn", "blocks.7"), ("blocks.10.fc1", "blocks.10"),
    ("features.3.conv.0", "features.3"), ("conv1", "conv1"), ("patch_embed", "patch_embed"), ("fc", "fc"),
])
def test_group_key_is_stage_or_numbered_block(name, group):
    assert group_key(name) == group


def test_group_names_keep_first_appearance_order():
    names = ["conv1", "layer1.0.conv1", "layer2.0.conv1", "layer1.1.conv1", "fc"]
    assert group_names(names) == {"conv1": ["conv1"], "layer1": ["layer1.0.conv1", "layer1.1.conv1"],
                                  "layer2": ["layer2.0.conv1"], "fc": ["fc"]}


def test_filter_names_by_terms_or_exact_group():
    names = ["blocks.1.attn.q", "blocks.1.fc1", "blocks.10.attn.q", "blocks.10.fc1", "patch_embed"]
    assert filter_names(names, "") == filter_names(names, "  ") == names
    assert filter_names(names, "blocks.1") == ["blocks.1.attn.q", "blocks.1.fc1"]  # the group, not blocks.10
    assert filter_names(names, "FC1") == ["blocks.1.fc1", "blocks.10.fc1"]
    assert filter_names(names, "10 attn") == ["blocks.10.attn.q"]
    assert filter_names(names, "nothing") == []


def test_mean_ratio_and_settable():
    assert mean_ratio({"a": 0.2, "b": 0.4}, ["a", "b", "c"]) == pytest.approx(0.2)
    assert mean_ratio({}, []) == 0.0
    assert settable(["c", "a", "b"], {"a"}) == ["c", "b"]


def test_bin_row_means_equal_slices_and_covers_narrow_rows():
    row = np.arange(10, dtype=float)
    assert bin_row(row, 5).tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert bin_row(row, 10).tolist() == row.tolist()
    starts, ends = bin_bounds(3, 8)  # narrower than the bins: every slice holds a channel
    assert (ends > starts).all() and starts.min() == 0 and ends.max() == 3
    assert bin_row(np.array([1.0, 2.0, 3.0]), 8).tolist() == [1, 1, 1, 2, 2, 2, 3, 3]


def test_score_grid_exact_when_narrow_binned_when_wide():
    narrow = score_grid({"a": np.array([0.1, 1.0]), "b": np.array([1.0])}, sort=True)
    assert narrow.x == [0, 1] and narrow.spans is None
    np.testing.assert_array_equal(narrow.z, [[1.0, 0.1], [1.0, np.nan]])
    rng = np.random.default_rng(0)
    wide = score_grid({"a": rng.random(2048), "b": rng.random(64), "c": rng.random(10)}, max_cols=64)
    assert wide.z.shape == (3, 64) and len(wide.x) == 64
    assert wide.spans[0, 0].tolist() == [1, 32, 2048] and wide.spans[0, -1].tolist() == [2017, 2048, 2048]
    assert (np.diff(wide.z[0]) <= 1e-12).all()  # sorted: ranks binned keep descending order


def test_score_grid_grouped_means_per_stage():
    scores = {"layer1.0.conv1": np.array([1.0, 1.0]), "layer1.0.conv2": np.array([0.0, 0.0, 0.0, 0.0]),
              "layer2.0.conv1": np.array([0.5])}
    grid = score_grid(scores, grouped=True)
    assert grid.rows == ["layer1", "layer2"] and grid.counts == [2, 1]
    np.testing.assert_allclose(grid.z, [[0.5] * 4, [0.5] * 4])


def test_group_table_averages_units_per_ratio():
    table = pd.DataFrame({"unit": ["layer1.0.conv1", "layer1.0.conv1", "layer1.1.conv1", "layer1.1.conv1",
                                   "conv1", "conv1"],
                          "ratio": [0.1, 0.5] * 3, "accuracy_drop": [0.0, 0.2, 0.1, 0.4, 0.05, 0.5],
                          "accuracy": [0.9, 0.7, 0.8, 0.5, 0.85, 0.4]})
    out = group_table(table, ["accuracy_drop", "accuracy"])
    assert list(out["unit"]) == ["layer1", "layer1", "conv1", "conv1"]
    assert out["accuracy_drop"].tolist() == pytest.approx([0.05, 0.3, 0.05, 0.5])
    assert out["units"].tolist() == [2, 2, 1, 1]


def test_heatmaps_grow_with_rows_and_aggregate():
    rows = {f"blocks.{b}.{p}": np.random.default_rng(b).random(1536) for b in range(12) for p in ("q", "fc1")}
    full, grouped = importance_heatmap(rows), importance_heatmap(rows, grouped=True)
    assert full.layout.height == heat_height(24) and grouped.layout.height == heat_height(12)
    assert len(full.data[0].x) == 64 and list(grouped.data[0].y) == [f"blocks.{b}" for b in range(12)]
    table = pd.DataFrame([{"unit": u, "ratio": r, "accuracy_drop": 0.1, "accuracy": 0.8, "loss_increase": 0.2}
                          for u in rows for r in (0.25, 0.5)])
    sens = sensitivity_heatmap(table, grouped=True)
    assert list(sens.data[0].y) == [f"blocks.{b}" for b in range(12)] and sens.data[0].z.shape == (12, 2)


# ---- the Tune page on ResNet-50 ----------------------------------------------------------------------------

def key(unit: str) -> str:
    return slider_key(MODEL, "channel", unit)


@pytest.fixture
def units() -> list[str]:
    spec = get_spec(MODEL)
    return [u.name for u in build_cost_model(spec.model, spec.example_input, "channel").units]


def ratios(at: AppTest, units: list[str]) -> dict[str, float]:
    return {u: at.session_state[key(u)] for u in units}


def assert_estimates_match(at: AppTest, units: list[str]) -> None:
    spec = get_spec(MODEL)
    expected = build_cost_model(spec.model, spec.example_input, "channel").estimate(ratios(at, units))
    assert metric(at, "Parameters (estimate)") == human(expected["params"])
    assert metric(at, "FLOPs / image (estimate)") == human(expected["flops"])


def drawn_units(at: AppTest) -> set[str]:
    """The units whose slider is drawn (in a grid, the tree lists them column by column)."""
    prefix = key("")
    return {s.key.removeprefix(prefix) for s in at.slider if s.key.startswith(prefix)}


def group_labels(at: AppTest) -> list[str]:
    return [e.label for e in at.expander if " · mean ratio " in e.label]


def test_sliders_grouped_by_stage_with_mean_ratio(monkeypatch, tmp_path, units):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    assert len(units) == 37
    labels = group_labels(at)
    assert [label.split(" · ")[0] for label in labels] == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    assert labels[3] == "layer3 · 13 units · mean ratio 0.00"
    assert not any(e.proto.expanded for e in at.expander if e.label in labels)  # collapsed
    assert drawn_units(at) == set(units)
    at.slider(key=key("layer3.0.conv2")).set_value(0.65).run()
    assert group_labels(at)[3] == "layer3 · 13 units · mean ratio 0.05"
    assert_estimates_match(at, units)


def test_search_draws_only_matches_and_keeps_the_rest(monkeypatch, tmp_path, units):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.slider(key=key("layer1.0.conv1")).set_value(0.3).run()
    at.text_input(key="unit-search").input("layer3").run()
    assert drawn_units(at) == LAYER3
    assert [(e.label.split(" · ")[0], e.proto.expanded) for e in at.expander if e.label in group_labels(at)] == [
        ("layer3", True)]
    at.text_input(key="unit-search").input("conv3").run()
    assert drawn_units(at) == {f"layer{i}.0.conv3" for i in range(1, 5)}
    assert at.session_state[key("layer1.0.conv1")] == pytest.approx(0.3)  # hidden, not reset
    assert_estimates_match(at, units)
    at.text_input(key="unit-search").input("").run()
    assert at.slider(key=key("layer1.0.conv1")).value == pytest.approx(0.3)


def test_bulk_set_all_layers_and_solver_leave_locked_units(monkeypatch, tmp_path, units):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    locked = ["layer3.0.conv2", "layer4.1.conv1"]
    at.slider(key=key(locked[0])).set_value(0.2).run()
    at.multiselect(key=f"locked|{MODEL}|channel").set_value(locked).run()
    assert at.multiselect(key="solver-locked").value == locked  # one notion of locking: the solver's
    assert all(at.slider(key=key(u)).disabled for u in locked)

    chosen = ["layer1.0.conv1", "layer3.0.conv2", "layer3.1.conv1", "layer4.0.conv3"]
    at.multiselect(key=f"bulk|{MODEL}|channel").set_value(chosen).run()
    at.slider(key=f"bulk-value|{MODEL}|channel").set_value(0.6).run()
    at.button(key=f"bulk-apply|{MODEL}|channel").click().run()
    expected = {u: 0.6 if u in chosen and u not in locked else 0.0 for u in units} | {locked[0]: 0.2}
    assert ratios(at, units) == pytest.approx(expected)
    assert_estimates_match(at, units)

    at.text_input(key="unit-search").input("layer4").run()
    at.button(key=f"bulk-filtered|{MODEL}|channel").click().run()
    assert at.multiselect(key=f"bulk|{MODEL}|channel").value == [u for u in units
                                                                 if u.startswith("layer4.") and u not in locked]

    at.slider(key=f"ratio-all|{MODEL}|channel").set_value(0.4).run()
    assert ratios(at, units) == pytest.approx({u: 0.4 for u in units} | {locked[0]: 0.2, locked[1]: 0.0})
    assert_estimates_match(at, units)

    at.selectbox(key="solver-strategy").set_value("uniform").run()
    at.selectbox(key="solver-target").set_value("flops").run()
    at.number_input(key="solver-value").set_value(3.0).run()
    at.button(key="solve").click().run()
    assert not at.exception, [e.value for e in at.exception]
    after = ratios(at, units)
    assert after[locked[0]] == pytest.approx(0.2) and after[locked[1]] == pytest.approx(0.0)
    assert len({round(r, 6) for u, r in after.items() if u not in locked}) == 1  # uniform on the rest
    assert after["layer1.0.conv1"] != pytest.approx(0.4)  # the solver did fill them
    assert_estimates_match(at, units)


def test_model_heatmap_of_54_layers_shows_stages_until_full_detail(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path)
    channel = next(s for s in chart_specs(at) if s["data"][0]["type"] == "heatmap")
    assert len(channel["data"][0]["y"]) == 37 and len(channel["data"][0]["x"]) == 64  # < 41 rows: every unit
    at.radio(key="heat-rows").set_value("layers").run()
    heat = next(s for s in chart_specs(at) if s["data"][0]["type"] == "heatmap")["data"][0]
    assert heat["y"] == ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]
    at.toggle(key="heat-detail").set_value(True).run()
    spec = get_spec(MODEL)
    layers = [u.name for u in build_cost_model(spec.model, spec.example_input, "unstructured").units]
    detail = next(s for s in chart_specs(at) if s["data"][0]["type"] == "heatmap")
    assert detail["data"][0]["y"] == layers
    assert detail["layout"]["height"] == heat_height(len(detail["data"][0]["y"]))


def test_locks_survive_a_method_without_the_solver(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.multiselect(key=f"locked|{MODEL}|channel").set_value(["layer2.0.conv1"]).run()
    at.radio(key="method").set_value("head").run()  # no heads in a CNN: no sliders, no solver panel
    at.run()  # Streamlit has dropped the solver's "Locked" value by now
    at.radio(key="method").set_value("channel").run()
    assert at.multiselect(key="solver-locked").value == ["layer2.0.conv1"]
    assert at.slider(key=key("layer2.0.conv1")).disabled

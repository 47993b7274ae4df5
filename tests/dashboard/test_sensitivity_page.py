"""Sensitivity page and budget solver, driven through AppTest: a sweep runs in the background and its
heatmap appears; a second session reads it from the cache; the solver fills the sliders with exactly
what core.allocate chooses; the predicted accuracy follows the sliders and is stored with the run."""

from __future__ import annotations

import json

from core.allocate import Target, allocate, drop_curves, predicted_drop
from core.estimate import build_cost_model
from core.sensitivity import SweepSpec, read_table, sweep
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import chart_specs, metric, open_app, wait_for_job

SMALL = {"sens-grid": [0.25, 0.5], "sens-eval": 200, "sens-calib": 64}


def small_sweep_spec(model: str, criterion: str = "l1") -> SweepSpec:
    spec = get_spec(model)
    return SweepSpec(model, spec.fingerprint, "channel", criterion, (0.25, 0.5), 200, 64, 0)


def set_small_sweep(at) -> None:
    at.multiselect(key="sens-grid").set_value(SMALL["sens-grid"])
    at.number_input(key="sens-eval").set_value(SMALL["sens-eval"])
    at.number_input(key="sens-calib").set_value(SMALL["sens-calib"])
    at.run()


def test_sweep_runs_in_background_then_heatmap_then_cache(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "sensitivity")
    set_small_sweep(at)
    assert any("Not measured yet" in i.value for i in at.info)
    at.button(key="run-sweep").click().run()
    wait_for_job(at, "sweep")
    assert not at.exception and not at.error
    heat = next(s for s in chart_specs(at)
                if s["data"][0]["type"] == "heatmap" and s["data"][0].get("x") == ["0.25", "0.5"])
    assert heat["data"][0]["y"] == ["fc1", "fc2"]
    cached = read_table(next((tmp_path / "cache" / "sensitivity").glob("*.csv")), "digits-mlp")
    assert len(cached) == 4 and set(cached["unit"]) == {"fc1", "fc2"}
    # a new session (a refresh) shows the cached sweep at once: no button, no job
    fresh = open_app(monkeypatch, "digits-mlp", tmp_path, "sensitivity")
    set_small_sweep(fresh)
    assert not [b for b in fresh.button if b.key == "run-sweep"]
    assert "sweep" not in fresh.session_state  # nothing was started



def test_a_refresh_brings_back_the_settings_of_the_sweep_it_shows(monkeypatch, tmp_path):
    """A refresh starts a new session, whose controls used to fall back to the defaults (1,000 images): the page
    showed the running sweep's progress, then, once it ended, "Not measured yet" for settings nobody had swept — the
    sweep the user started was nowhere to be seen. Found by the browser test that reloads during a sweep."""
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "sensitivity")
    set_small_sweep(at)
    at.button(key="run-sweep").click().run()
    fresh = wait_for_job(open_app(monkeypatch, "digits-mlp", tmp_path, "sensitivity"), "sweep")  # the refresh
    assert fresh.number_input(key="sens-eval").value == SMALL["sens-eval"]
    assert fresh.number_input(key="sens-calib").value == SMALL["sens-calib"]
    assert fresh.multiselect(key="sens-grid").value == SMALL["sens-grid"]
    assert not [b for b in fresh.button if b.key == "run-sweep"]
    assert any(s["data"][0]["type"] == "heatmap" and s["data"][0].get("x") == ["0.25", "0.5"]
               for s in chart_specs(fresh))
    assert not fresh.exception and not fresh.warning
    # what the user sets in the new session is theirs: the last sweep's settings do not come back over it
    fresh.number_input(key="sens-eval").set_value(300).run()
    assert fresh.number_input(key="sens-eval").value == 300
    assert any("Not measured yet" in i.value for i in fresh.info)

def test_solver_fills_sliders_with_cores_allocation_and_prediction_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec = get_spec("digits-mlp")
    table = sweep(spec, small_sweep_spec("digits-mlp"))  # measured once, then cached for the app
    at = open_app(monkeypatch, "digits-mlp", tmp_path)
    baseline_accuracy = get_baseline_accuracy(at)  # the Model page's measured baseline
    set_small_sweep(goto(at, "sensitivity"))
    goto(at, "tune")
    at.selectbox(key="solver-target").set_value("flops")
    at.number_input(key="solver-value").set_value(2.0)
    at.selectbox(key="solver-strategy").set_value("sensitivity").run()
    at.button(key="solve").click().run()
    assert any("target met" in s.value for s in at.success)
    expected = allocate("sensitivity", build_cost_model(spec.model, spec.example_input, "channel"), Target("flops", 2),
                        table=table)
    sliders = {s.key.split("|")[-1]: s.value for s in at.slider if s.key.startswith("ratio|digits-mlp|channel|")}
    assert sliders == expected.ratios
    # the predicted accuracy follows the sliders: baseline test accuracy minus the summed sweep drops
    drop = predicted_drop(drop_curves(table), expected.ratios)
    predicted = metric(at, "Accuracy (predicted)")
    assert predicted == f"{100 * max(0.0, baseline_accuracy - drop):.2f}%"
    # apply: the run stores the prediction next to the measurement, and Results shows both
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    run_dir = next((tmp_path / "runs").iterdir())
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert f"{100 * saved['prediction']['accuracy']:.2f}%" == predicted
    assert metric(goto(at, "results"), "Predicted accuracy") == predicted
    assert metric(at, "Measured accuracy") == f"{100 * saved['pruned']['accuracy']:.2f}%"


def get_baseline_accuracy(at) -> float:
    return float(metric(at, "Test accuracy").rstrip("%")) / 100


def test_focused_unit_slider_comes_first(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "tune")
    at.session_state["focus"] = "layer3.0.conv2"
    at.run()
    assert any("Selected in a chart: layer3.0.conv2" in c.value for c in at.caption)
    layer_sliders = [s.key for s in at.slider if s.key.startswith("ratio|mnist-resnet|channel|")]
    assert layer_sliders[0].endswith("layer3.0.conv2") and len(layer_sliders) == 9


def test_sensitivity_strategy_without_sweep_says_so(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.selectbox(key="solver-strategy").set_value("sensitivity").run()
    at.button(key="solve").click().run()
    assert any("needs a sensitivity table" in e.value for e in at.error)
    assert not at.exception

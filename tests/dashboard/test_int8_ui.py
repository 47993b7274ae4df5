"""int8 after the last stage in the dashboard (issue 14, point 4: recipes "... → int8"; core in a63850a): the Tune
page's checkbox puts quantize="int8" on the config Apply runs (a single method's, or a listed recipe's first config);
an imported config with int8 ticks it; Results shows the int8 model as the last step (a stage table row, or float32
vs int8 for a single method) with the figures metrics.json recorded; the Experiments and Export pages hand out
model.int8.onnx."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.config import PruneConfig
from core.metric_keys import TEST_ACCURACY, latency_key
from core.store import Store
from dashboard import state
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app, wait_for_job
from tests.dashboard.test_stages_ui import _add, _set_stage

MODEL = "digits-mlp"
INT8_ROW = "int8 (onnxruntime)"


def _errors(at) -> list[str]:
    return [e.value for e in (*at.exception, *at.error)]


def _empty(value) -> bool:
    return value is None or bool(pd.isna(value))


def _recorded(run) -> tuple[PruneConfig, dict]:
    """The run folder's config.json and metrics.json, as written."""
    return PruneConfig.load(run.folder / "config.json"), json.loads((run.folder / "metrics.json").read_text())


def _apply(at):
    at.button(key=state.APPLY).click().run()
    wait_for_job(at)
    assert not _errors(at), _errors(at)
    return Store().list(model=MODEL, status="done")[0]


@pytest.mark.slow  # AppTest: a digits-mlp run (no fine-tuning) quantised and timed, four pages: 15 s, more if busy
def test_ticking_int8_runs_it_and_results_and_experiments_show_it(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _set_stage(at, "neuron", 0.3)
    at.checkbox(key=state.QUANTIZE).check().run()
    run = _apply(at)
    config, metrics = _recorded(run)
    assert config.quantize == "int8" and config.method == "neuron" and not config.then
    int8 = metrics["int8"]
    assert (tmp_path / "runs" / run.id / "model.int8.onnx").stat().st_size == int8["onnx_bytes"]

    goto(at, "results")
    assert not _errors(at), _errors(at)
    table = next(d.value for d in at.dataframe if "int8" in d.value.columns).set_index("metric")
    assert table.loc["ONNX size (bytes)", "int8"] == int8["onnx_bytes"]
    assert table.loc["ONNX size (bytes)", "float32"] == metrics["pruned"]["onnx_bytes"]
    assert table.loc["test accuracy", "int8"] == int8["accuracy"]
    assert table.loc["test accuracy", "float32"] == metrics["pruned"]["accuracy"]
    assert table.loc["latency b1 (ms)", "int8"] == int8[latency_key(1)]
    assert any(int8["how"] in c.value for c in at.caption)  # labelled with how it was measured

    goto(at, "experiments")
    at.toggle(key=state.EXP_DOWNLOADS).set_value(True).run()
    assert not _errors(at), _errors(at)
    assert "model.int8.onnx" in [d.label for d in at.get("download_button")]
    goto(at, "export")  # offered with the run's other files, before any "Measure deployable forms"
    assert not _errors(at), _errors(at)
    int8_download = next(d for d in at.get("download_button") if d.label == "model.int8.onnx")
    assert int8_download.key == state.DL_INT8


@pytest.mark.slow  # AppTest: a two-stage digits-mlp recipe (no fine-tuning) quantised and timed: 11 s, more if busy
def test_a_recipe_then_int8_shows_every_stage_and_the_int8_row(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _add(at, "neuron", 0.3)
    _add(at, "unstructured", 0.5)
    at.checkbox(key=state.QUANTIZE).check().run()
    run = _apply(at)
    config, metrics = _recorded(run)
    assert config.quantize == "int8" and [s.method for s in config.stages()] == ["neuron", "unstructured"]
    assert config.methods_text() == "neuron → unstructured → int8"

    goto(at, "results")
    assert not _errors(at), _errors(at)
    rows = next(d.value for d in at.dataframe if "non-zero params" in d.value.columns).to_dict("records")
    assert [r["method"] for r in rows] == ["neuron", "unstructured", INT8_ROW]  # 0 epochs: one row per stage
    last = rows[-1]
    int8 = metrics["int8"]
    assert last["test accuracy"] == int8["accuracy"] and last["ONNX bytes"] == int8["onnx_bytes"]
    assert last["latency b1 (ms)"] == int8[latency_key(1)]
    assert all(_empty(last[c]) for c in ("stage", "params", "FLOPs", "non-zero params"))  # not measured: empty


def test_importing_a_config_with_int8_ticks_the_box_and_one_without_unticks_it(monkeypatch, tmp_path):
    spec = get_spec(MODEL)
    config = PruneConfig(MODEL, "neuron", {"fc1": 0.3}, model_fingerprint=spec.fingerprint, quantize="int8")
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.file_uploader(key=state.EXP_IMPORT).set_value(("int8.json", config.to_json().encode(), "application/json")).run()
    assert not _errors(at), _errors(at)
    goto(at, "tune")
    assert at.checkbox(key=state.QUANTIZE).value is True
    goto(at, "experiments")
    plain = PruneConfig(MODEL, "neuron", {"fc1": 0.3}, model_fingerprint=spec.fingerprint)
    at.file_uploader(key=state.EXP_IMPORT).set_value(("plain.json", plain.to_json().encode(), "application/json")).run()
    goto(at, "tune")
    assert at.checkbox(key=state.QUANTIZE).value is False  # Apply runs what was loaded


def test_the_stage_table_ends_with_the_int8_row_and_leaves_unmeasured_cells_empty():
    from dashboard.components import stage_results

    config = PruneConfig(MODEL, "neuron", {"fc1": 0.3}, then=[{"method": "unstructured", "ratios": {"fc2": 0.5}}],
                         quantize="int8")
    point = {"fraction": 1.0, "params": 900, "nonzero_params": 800, "flops": 1800}
    points = [{**point, "stage": 1, "phase": "baseline", "step": 0, "accuracy": 0.9},
              {**point, "stage": 1, "phase": "pruned", "step": 1, "accuracy": 0.8},
              {**point, "stage": 2, "phase": "pruned", "step": 2, "accuracy": 0.7}]
    int8 = {"onnx_bytes": 4321, "accuracy": 0.69, latency_key(1): 0.012, "how": "onnxruntime static"}
    pruned = {"onnx_bytes": 9876, latency_key(1): 0.02}
    frame = stage_results.stage_table(points, config, TEST_ACCURACY, int8=int8, pruned=pruned)
    rows = frame.to_dict("records")
    assert [r["method"] for r in rows] == ["neuron", "unstructured", INT8_ROW]
    assert (rows[-1]["test accuracy"], rows[-1]["ONNX bytes"], rows[-1]["latency b1 (ms)"]) == (0.69, 4321, 0.012)
    assert all(_empty(rows[-1][c]) for c in ("stage", "params", "FLOPs", "non-zero params"))
    assert (rows[1]["ONNX bytes"], rows[1]["latency b1 (ms)"]) == (9876, 0.02)  # the float model the last stage left
    assert _empty(rows[0]["ONNX bytes"])  # not exported after stage 1: empty, not 0
    without = stage_results.stage_table(points, config, TEST_ACCURACY)  # a run without int8: no such columns
    assert "ONNX bytes" not in without.columns and len(without) == 2

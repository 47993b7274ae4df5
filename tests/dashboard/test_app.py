"""The dashboard driven headless through streamlit.testing.v1.AppTest: it loads for every sample model,
sliders move the estimates (checked against core's own estimate), and apply produces a measured run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.config import PruneConfig
from core.estimate import build_cost_model
from dashboard.components.format import human
from tests.conftest import SAMPLE_NAMES, get_spec
from tests.dashboard.nav import APP, goto


def open_app(monkeypatch: pytest.MonkeyPatch, model: str, home: Path, page: str = "model") -> AppTest:
    """A new session of the dashboard on `model`, showing `page` (the Model page first, as a browser would)."""
    monkeypatch.setenv("PRUNELAB_MODEL", model)
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page != "model":
        goto(at, page)
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


@pytest.mark.parametrize("model", SAMPLE_NAMES)
def test_app_loads_each_model_with_baseline_and_heatmap(monkeypatch, tmp_path, model):
    at = open_app(monkeypatch, model, tmp_path)
    spec = get_spec(model)
    assert at.sidebar.selectbox(key="model").value == model
    assert metric(at, "Parameters") == human(sum(p.numel() for p in spec.model.parameters()))
    heat = next(s for s in chart_specs(at) if s["data"][0]["type"] == "heatmap")
    units = build_cost_model(spec.model, spec.example_input, "channel").units
    assert heat["data"][0]["y"] == [u.name for u in units]  # one heatmap row per coupled channel group
    assert not at.error


def test_layer_slider_moves_estimate_to_cores_value(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "tune")
    before = metric(at, "Parameters (estimate)")
    at.slider(key="ratio|mnist-resnet|channel|layer3.0.conv2").set_value(0.5).run()
    after = metric(at, "Parameters (estimate)")
    spec = get_spec("mnist-resnet")
    expected = build_cost_model(spec.model, spec.example_input, "channel").estimate({"layer3.0.conv2": 0.5})
    assert before != after
    assert after == human(expected["params"])
    assert metric(at, "FLOPs / image (estimate)") == human(expected["flops"])


def test_all_layers_slider_sets_every_layer(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "tune")
    at.slider(key="ratio-all|mnist-resnet|channel").set_value(0.3).run()
    layer_sliders = [s for s in at.slider if s.key.startswith("ratio|mnist-resnet|channel|")]
    assert len(layer_sliders) == 9 and all(s.value == pytest.approx(0.3) for s in layer_sliders)


def test_unstructured_method_explains_masks_and_keeps_dense_size(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path)
    baseline_size = metric(at, "fp32 size")  # the Model page's measured baseline
    goto(at, "tune")
    at.radio(key="method").set_value("unstructured").run()
    at.slider(key="ratio-all|mnist-resnet|unstructured").set_value(0.8).run()
    assert any("Masks zero weights" in i.value for i in at.info)
    assert metric(at, "fp32 size (estimate)") == baseline_size  # masks do not shrink a dense file
    assert metric(at, "Non-zero params (estimate)") != metric(at, "Parameters (estimate)")


def active_jobs(task: str) -> list[jobs.JobStatus]:
    """The background jobs of `task` (any model) still running in this test's workspace."""
    found = (jobs.status(p) for p in (jobs.workspace() / "jobs" / task).glob("*/*") if p.is_dir())
    return [j for j in found if j is not None and j.active]


def wait_for_job(at: AppTest, task: str = "run", seconds: float = 240) -> AppTest:
    """Rerun the script (as the page's polling fragment would) until the background jobs of `task` end."""
    deadline = time.monotonic() + seconds
    while active_jobs(task):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)
        at.run()
    return at.run()


def run_job(at: AppTest, model: str) -> jobs.JobStatus | None:
    """The run job this session started for model (None if it started none)."""
    key = at.session_state[f"run-key|{model}"] if f"run-key|{model}" in at.session_state else None
    return None if key is None else jobs.status(jobs.slot("run", model, key))


def test_apply_produces_measured_comparison_and_downloads(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.slider(key="ratio-all|digits-mlp|channel").set_value(0.5).run()
    at.number_input(key="epochs").set_value(1).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error
    assert any("measured and saved" in s.value for s in at.success)

    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    saved = json.loads((run_dirs[0] / "metrics.json").read_text())
    # the Results page shows the run's measured figures with their change against the baseline
    assert metric(goto(at, "model"), "Test accuracy") == f"{100 * saved['baseline']['accuracy']:.2f}%"
    goto(at, "results")
    pruned_params = [m for m in at.metric if m.label == "Parameters"][-1]
    assert pruned_params.value == human(saved["pruned"]["params"])
    assert saved["pruned"]["params"] < saved["baseline"]["params"]
    bars = [s for s in chart_specs(at) if s["data"][0]["type"] == "bar" and len(s["data"]) == 2]
    assert bars and [d["name"] for d in bars[0]["data"]] == ["baseline", "pruned"]
    # the width chart shows every layer before and after (fc3 holds the classes and keeps them)
    widths = next(s for s in chart_specs(at) if [d.get("name") for d in s["data"]] == ["before", "after"])
    assert widths["data"][0]["x"] == ["fc1", "fc2", "fc3"]
    assert [bar["text"] for bar in widths["data"][1:]] == [["64", "32", "10"]]
    # the Export page offers the same config that was saved, the ONNX file, and the module for PyTorch
    goto(at, "export")
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["config.json", "model.onnx", "metrics.json", "model.pt2", "model.safetensors"]
    config = PruneConfig.load(run_dirs[0] / "config.json")
    assert config.ratios == {"fc1": 0.5, "fc2": 0.5} and config.finetune.epochs == 1


def test_results_survive_a_new_session(monkeypatch, tmp_path):
    """A refresh is a new session: the saved run must still be listed and shown."""
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.slider(key="ratio|digits-mlp|channel|fc1").set_value(0.25).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    fresh = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    assert fresh.selectbox(key="results-run").value == next((tmp_path / "runs").iterdir()).name
    assert len(goto(fresh, "export").get("download_button")) == 5  # config, onnx, metrics, .pt2, .safetensors


def test_broken_run_folder_is_skipped_not_fatal(monkeypatch, tmp_path):
    broken = tmp_path / "runs" / "20000101-000000-digits-mlp-channel"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text("{not json")
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    assert any("No runs yet" in i.value for i in at.info)


def test_export_measures_deployable_forms_and_offers_int8(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.radio(key="method").set_value("unstructured").run()
    at.slider(key="ratio-all|digits-mlp|unstructured").set_value(0.9).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    goto(at, "export")
    at.button(key="run-deploy").click().run()
    wait_for_job(at, "deploy")
    assert not at.exception and not at.error
    run_dir = next((tmp_path / "runs").iterdir())
    report = json.loads((run_dir / "deploy.json").read_text())
    shown = next(df for df in at.dataframe if "how it runs" in df.value.columns).value
    assert list(shown["form"]) == [r["form"] for r in report["rows"]]
    assert "model.int8.onnx" in [d.label for d in at.get("download_button")]

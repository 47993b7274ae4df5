"""Runs that went partly wrong still show what was measured: a ratio clamped so a layer keeps one weight or
channel is reported, and a run without model.onnx (export failed) shows its torch figures and says why."""

from __future__ import annotations

import json

from core.cli import main
from core.store import Store
from core.workspace import workspace
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app


def _prune(tmp_path, monkeypatch, ratios: dict, name: str) -> None:
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    (tmp_path / "ratios.json").write_text(json.dumps(ratios))
    out = workspace() / "runs" / name
    assert main(["prune", "digits-mlp", "--method", "channel", "--config", str(tmp_path / "ratios.json"),
                 "--latency-batches", "1,32", "--out", str(out)]) == 0


def _measured(name: str, metrics: dict) -> None:
    """As if run `name` had measured `metrics`: its metrics.json and its record in the store (which the pages
    read) say so."""
    (workspace() / "runs" / name / "metrics.json").write_text(json.dumps(metrics))
    Store().finish(name, metrics)


def test_clamped_ratio_is_reported_on_results(tmp_path, monkeypatch):
    _prune(tmp_path, monkeypatch, {"fc1": 0.999}, "clamped")
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    assert any("would have emptied fc1" in w.value for w in at.warning)
    assert not at.exception


def test_run_without_onnx_shows_torch_figures_and_why(tmp_path, monkeypatch):
    _prune(tmp_path, monkeypatch, {"fc1": 0.5}, "no-onnx")
    folder = workspace() / "runs" / "no-onnx"
    metrics = json.loads((folder / "metrics.json").read_text())
    for m in (metrics["baseline"], metrics["pruned"]):
        for key in [k for k in m if k.startswith("latency_ms") or k.startswith("latency_p90")]:
            del m[key]
        m["onnx_error"], m["onnx_bytes"] = "ONNX export failed: Unsupported: data-dependent branch", 0
    _measured("no-onnx", metrics)
    (folder / "model.onnx").unlink()
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    assert not at.exception, [e.value for e in at.exception]
    assert any("No exported graph" in i.value for i in at.info)
    assert any(m.label.startswith("Latency b1 (torch)") for m in at.metric)
    assert any("No model.onnx" in w.value for w in goto(at, "export").warning)


def test_a_fine_tune_that_lost_accuracy_is_reported_on_results(tmp_path, monkeypatch):
    """The Results page says so when fine-tuning ended below where the cut left the model (core's one sentence)."""
    _prune(tmp_path, monkeypatch, {"fc1": 0.5}, "worse")
    metrics = json.loads((workspace() / "runs" / "worse" / "metrics.json").read_text())
    pruned = metrics["pruned"]
    pruned["accuracy_before_finetune"], pruned["accuracy"] = pruned["accuracy"], pruned["accuracy"] - 0.2
    _measured("worse", metrics)
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    warnings = [w.value for w in at.warning]
    assert any("fine-tuning lowered test accuracy" in w.lower() for w in warnings), warnings
    assert not at.exception

"""The Export page hands out the pruned model in the user's own formats (issue 13, point 4): the ONNX file, the
.pt2 (torch.export) and the weights (.safetensors), each with the one line that loads it; a run recorded before
runs kept their weights says so instead of offering them."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import torch

from core.cli import main
from core.data import random_inputs
from core.workspace import workspace
from dashboard import cache
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app


def _run(tmp_path, monkeypatch, name: str) -> None:
    """A digits-mlp channel run recorded under the workspace's run folders (no fine-tuning, batch-1 latency)."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    (tmp_path / "ratios.json").write_text(json.dumps({"fc1": 0.5}))
    assert main(["prune", "digits-mlp", "--method", "channel", "--config", str(tmp_path / "ratios.json"),
                 "--finetune-epochs", "0", "--latency-batches", "1", "--out", str(workspace() / "runs" / name)]) == 0


def _code(at) -> str:
    return "\n".join(c.value for c in at.code)


def test_export_page_offers_pt2_and_safetensors_with_how_to_load_them(tmp_path, monkeypatch):
    _run(tmp_path, monkeypatch, "mine")
    at = goto(open_app(monkeypatch, "digits-mlp", tmp_path), "export")
    assert not at.exception, [e.value for e in at.exception]
    labels = [d.label for d in at.get("download_button")]
    assert {"model.onnx", "model.pt2", "model.safetensors"} <= set(labels)
    code = _code(at)
    assert 'torch.export.load("model.pt2").module()(x)' in code
    assert 'load_pruned(load("digits-mlp").model, PruneConfig.load("config.json"), "model.safetensors")' in code
    assert "onnxruntime.InferenceSession" in code


def test_the_pt2_the_page_hands_out_equals_the_runs_onnx(tmp_path, monkeypatch):
    """What the .pt2 button downloads (cache.run_pt2, called when it is clicked) runs like the run's model.onnx."""
    _run(tmp_path, monkeypatch, "mine")
    folder = workspace() / "runs" / "mine"
    spec = get_spec("digits-mlp")
    data = cache.run_pt2("digits-mlp", str(folder), (folder / "model.safetensors").stat().st_mtime_ns, spec)
    (tmp_path / "model.pt2").write_bytes(data)
    x = random_inputs(spec.example_input, 3, torch.Generator().manual_seed(0))
    got = torch.export.load(tmp_path / "model.pt2").module()(x).detach().numpy()
    sess = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(got - sess.run(None, {"input": x.numpy()})[0]).max() <= 1e-4


def test_a_run_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    _run(tmp_path, monkeypatch, "old")
    (workspace() / "runs" / "old" / "model.safetensors").unlink()  # as a run recorded before runs kept them
    at = goto(open_app(monkeypatch, "digits-mlp", tmp_path), "export")
    assert not at.exception, [e.value for e in at.exception]
    labels = [d.label for d in at.get("download_button")]
    assert "model.onnx" in labels and "model.pt2" not in labels and "model.safetensors" not in labels
    assert any("model.safetensors" in c.value and "replay" in c.value for c in at.caption)

"""Bad input that must not hurt: ratios that would empty a layer are clamped and reported, a model the ONNX
exporter cannot handle still gets its torch measurements, run folders cannot escape the workspace, and
config parsing survives arbitrary JSON (hypothesis)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import PruneConfig
from core.errors import PruneLabError
from core.experiment import run
from core.metrics import count_nonzero
from core.runs import new_run_dir
from core.workspace import workspace
from tests.conftest import get_spec
from tests.test_cli import _call
from tests.test_user_models import write


@pytest.mark.parametrize("method, ratios", [("channel", {"fc1": 0.999}), ("unstructured", {"fc3": 0.9999})])
def test_a_ratio_that_would_empty_a_layer_is_clamped_and_reported(method, ratios, tmp_path):
    spec = get_spec("digits-mlp")
    out = run(spec, PruneConfig("digits-mlp", method, ratios), batches=(1,))
    assert out.clamped == list(ratios)
    layer = dict(out.model.named_modules())[next(iter(ratios))]
    if method == "channel":
        assert layer.out_features == 1
    else:
        assert count_nonzero(layer) >= 1 and int((layer.weight != 0).sum()) == 1
    assert json.loads(out.metrics_json())["clamped"] == list(ratios)
    code, text, err = _call("prune", "digits-mlp", "--method", method, "--config", str(_ratios_file(tmp_path, ratios)),
                            "--latency-batches", "1", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "would have emptied" in text


def _ratios_file(folder: Path, ratios: dict) -> Path:
    path = folder / "ratios.json"
    path.write_text(json.dumps(ratios))
    return path


UNEXPORTABLE = """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class Branchy(nn.Module):
        '''Python control flow on tensor values: torch runs it, torch.export cannot trace it.'''
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            if float(h.sum()) > 1e9:
                h = h * 0
            return self.fc2(h)

    def build():
        torch.manual_seed(0)
        x = torch.randn(200, 8)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        data = DataLoader(TensorDataset(x, y), batch_size=50)
        return {"model": Branchy().eval(), "example_input": x[:1], "eval_loader": data, "train_loader": data}
"""


def test_a_model_whose_export_fails_keeps_its_torch_measurements(tmp_path):
    ref = f"{write(tmp_path, 'branchy.py', UNEXPORTABLE)}:build"
    code, text, err = _call("prune", ref, "--method", "channel", "--ratio", "0.5", "--latency-batches", "1",
                            "--out", str(tmp_path / "run"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for m in (metrics["baseline"], metrics["pruned"]):
        assert "ONNX export failed" in m["onnx_error"] and m["onnx_bytes"] == 0
        assert m["params"] > 0 and 0 <= m["accuracy"] <= 1 and m["torch_latency_ms"] > 0
        assert "latency_ms" not in m  # nothing to time in onnxruntime, and nothing made up
    assert metrics["pruned"]["params"] < metrics["baseline"]["params"]
    assert not (tmp_path / "run" / "model.onnx").exists()
    assert "no model.onnx" in text


@pytest.mark.parametrize("model", ["../../etc/x.py:build", "/abs/path/m.py:build", "a\\b", "..", "x" * 300])
def test_run_folders_stay_inside_the_workspace(model, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    folder = new_run_dir(model, "channel")
    assert folder.resolve().parent == (workspace() / "runs").resolve()
    assert len(folder.name) < 120 and folder.is_dir()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=5), max_leaves=20)
FIELDS = ["version", "model", "method", "ratios", "criterion", "model_fingerprint", "finetune",
          "calibration_samples", "seed", "schedule", "pattern", "remove_blocks"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=12))
def test_config_parsing_never_crashes_and_round_trips_what_it_accepts(data):
    """Arbitrary JSON objects: either a one-line PruneLabError or a config that round-trips exactly."""
    try:
        config = PruneConfig.from_dict(data)
    except PruneLabError as e:
        assert "\n" not in str(e)
        return
    assert PruneConfig.from_json(config.to_json()) == config
    assert all(0 <= r < 1 and math.isfinite(r) for r in config.ratios.values())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_config_text_never_crashes(text):
    try:
        PruneConfig.from_json(text)
    except PruneLabError as e:
        assert "\n" not in str(e)


@settings(max_examples=100, deadline=None)
@given(ratios=st.dictionaries(st.sampled_from(["fc1", "fc2", "fc3"]), st.floats(allow_nan=True,
                                                                               allow_infinity=True), max_size=3))
def test_valid_configs_with_fuzzed_ratios(ratios):
    base = PruneConfig("digits-mlp", "unstructured", {}).to_dict()
    try:
        config = PruneConfig.from_dict({**base, "ratios": ratios})
    except PruneLabError as e:
        assert "ratio" in str(e) and "\n" not in str(e)
        assert any(not (isinstance(r, float) and math.isfinite(r) and 0 <= r < 1) for r in ratios.values())
        return
    assert config.ratios == {k: float(v) for k, v in sorted(ratios.items())}


def test_unknown_nested_types_are_refused_by_name():
    for bad in ({"finetune": [1]}, {"schedule": "iterative"}, {"pattern": {"n": "2"}}, {"remove_blocks": "layer1"}):
        with pytest.raises(PruneLabError):
            PruneConfig.from_dict({**PruneConfig("digits-mlp", "channel", {}).to_dict(), **bad})




@pytest.mark.parametrize("name", ["/abs/dir/m.py:build", "../up/m.py:build", "sub/dir/m.py:build"])
def test_cache_files_of_user_models_stay_in_the_workspace(name, tmp_path, monkeypatch):
    import dataclasses

    from core import hardware, sensitivity

    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec = dataclasses.replace(get_spec("digits-mlp"), name=name)
    cache = (tmp_path / "cache").resolve()
    for path in (hardware.cache_path(spec, 1, 1),
                 sensitivity.cache_path(sensitivity.SweepSpec(name, spec.fingerprint, "channel"))):
        assert path.resolve().parent.parent == cache, path

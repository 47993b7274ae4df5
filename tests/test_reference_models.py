"""The reference zoo (224x224, seeded random weights, no data) in the engine, the CLI and the dashboard:
size, FLOPs and latency are measured, accuracy is reported as not available (never as a number), and
what needs data (fine-tuning, sensitivity sweeps) says so clearly."""

from __future__ import annotations

import json

import pytest

from core.config import FinetuneConfig, PruneConfig
from core.errors import PruneLabError
from core.experiment import run
from core.graph import channel_units
from core.latency import measure_cached, measure_torch
from core.metrics import count_params
from core.models import available, load
from core.sensitivity import SweepSpec, sweep
from sample_models import ZOO
from tests.dashboard.nav import goto
from tests.dashboard.test_app import metric, open_app
from tests.test_cli import _call


@pytest.fixture(scope="module")
def mobilenet():
    return load("mobilenetv2")  # the cheapest zoo model: 0.3 GMACs


def test_zoo_is_registered_and_reproducible():
    assert set(ZOO) == {"resnet18", "resnet50", "mobilenetv2", "vit-s16"}
    assert set(ZOO) <= set(available()) and not set(ZOO) & set(available(trained_only=True))
    a, b = load("resnet18"), load("resnet18")
    assert a.fingerprint == b.fingerprint and not a.has_data and a.split is None
    assert tuple(a.example_input.shape) == (1, 3, 224, 224)


def test_run_measures_size_and_latency_and_reports_no_accuracy(mobilenet):
    units = channel_units(mobilenet.model, mobilenet.example_input)
    config = PruneConfig("mobilenetv2", "channel", {u.name: 0.3 for u in units},
                         model_fingerprint=mobilenet.fingerprint, calibration_samples=512)
    out = run(mobilenet, config)
    assert out.pruned["params"] == count_params(out.model) < out.baseline["params"]
    assert out.pruned["accuracy"] is None and out.baseline["accuracy"] is None
    assert out.pruned["latency_batches"] == [1] and "latency_ms_batch32" not in out.pruned  # b32: seconds each
    for m in (out.baseline, out.pruned):
        assert 0 < m["latency_ms"] <= m["latency_p90_ms"] and 0 < m["torch_latency_ms"] <= m["torch_latency_p90_ms"]
    assert json.loads(out.metrics_json())["pruned"]["accuracy"] is None


def test_what_needs_data_says_so(mobilenet):
    config = PruneConfig("mobilenetv2", "channel", {}, finetune=FinetuneConfig(epochs=1))
    with pytest.raises(PruneLabError, match="fine-tuning needs labelled data.*mobilenetv2 has none"):
        run(mobilenet, config)
    with pytest.raises(PruneLabError, match="sensitivity sweep needs labelled data"):
        sweep(mobilenet, SweepSpec("mobilenetv2", mobilenet.fingerprint, "channel"))


def test_latency_is_cached_per_exported_file(tmp_path, monkeypatch, mobilenet):
    from core.export import export_onnx

    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    onnx, _ = export_onnx(mobilenet.model, mobilenet.example_input)
    first = measure_cached(onnx, (3, 224, 224))
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1
    monkeypatch.setattr("core.latency.measure_interleaved", lambda *a, **k: pytest.fail("measured again"))
    assert measure_cached(onnx, (3, 224, 224)) == first  # read back, not re-timed
    files[0].write_text("{truncated")
    monkeypatch.undo()
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    assert measure_cached(onnx, (3, 224, 224)).batch == 1  # a damaged entry is measured again
    assert json.loads(files[0].read_text())["batch"] == 1


def test_torch_latency_is_labelled_and_pins_threads(mobilenet):
    import torch

    before = torch.get_num_threads()
    lat = measure_torch({"m": mobilenet.model}, (3, 224, 224), batch=1, threads=1, warmup=2, rounds=2)["m"]
    assert lat.runtime.startswith("torch-") and lat.threads == 1 and 0 < lat.median_ms <= lat.p90_ms
    assert torch.get_num_threads() == before


def test_cli_prune_and_allocate_without_a_sweep(tmp_path):
    code, out, err = _call("prune", "mobilenetv2", "--method", "channel", "--ratio", "0.25", "--out",
                           str(tmp_path / "run"))
    assert code == 0, err
    assert "n/a" in next(line for line in out.splitlines() if line.startswith("test accuracy"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["pruned"]["accuracy"] is None
    code, out, err = _call("allocate", "mobilenetv2", "--strategy", "uniform", "--target-flops", "2",
                           "--out", str(tmp_path / "c.json"))
    assert code == 0, err
    config = PruneConfig.load(tmp_path / "c.json")
    assert config.method == "channel" and config.ratios
    code, _, err = _call("allocate", "mobilenetv2", "--target-flops", "2", "--out", str(tmp_path / "d.json"))
    assert code == 2 and "needs --sensitivity" in err
    code, _, err = _call("prune", "mobilenetv2", "--method", "channel", "--ratio", "0.2", "--finetune-epochs", "1",
                         "--out", str(tmp_path / "ft"))
    assert code == 2 and "fine-tuning needs labelled data" in err


def test_dashboard_shows_accuracy_not_available(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mobilenetv2", tmp_path)
    assert metric(at, "Test accuracy") == "n/a"
    assert not at.error
    assert any("no data set" in c.value for c in at.caption)
    goto(at, "sensitivity")
    assert any("sensitivity sweeps measure accuracy and are not available" in i.value for i in at.info)
    goto(at, "tune")
    assert at.number_input(key="epochs").value == 0 and at.number_input(key="epochs").proto.disabled

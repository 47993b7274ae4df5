"""Mask vs shrink vs deploy: the sparse encoding round-trips, its sizes at 90% sparsity meet the
targets, int8 quantisation keeps the model usable, and `prunelab deploy` writes what it reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.config import PruneConfig
from core.deploy import decode_sparse, encode_sparse, initializers, onnx_accuracy, quantize_int8, variants
from core.errors import PruneLabError
from core.export import export_onnx
from core.graph import unstructured_units
from core.prune import apply, calibration
from tests.conftest import get_spec


def test_sparse_encoding_round_trips_exactly_in_fp32_and_within_half_a_step_in_int8():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    tensors = {"w": w, "shape": np.array([1, 2, 3], np.int64), "empty": np.zeros((2, 2), np.float32)}
    back = decode_sparse(encode_sparse(tensors))
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())
    back8 = decode_sparse(encode_sparse(tensors, int8=True))
    step = np.abs(w).max() / 127
    assert np.all(back8["w"][w == 0] == 0)  # zeros stay zeros (tiny values may round to zero too)
    assert np.abs(back8["w"] - w).max() <= step / 2 + 1e-7
    with pytest.raises(PruneLabError, match="magic"):
        decode_sparse(b"nope" + encode_sparse(tensors)[4:])


@pytest.fixture(scope="module")
def sparse90():
    spec = get_spec("mnist-resnet")
    model = apply(spec, PruneConfig(model=spec.name, method="unstructured",
                                    ratios={u.name: 0.9 for u in unstructured_units(spec.model)})).model
    return spec, export_onnx(model, spec.example_input)[0]


def test_sizes_at_ninety_percent_sparsity(sparse90):
    spec, onnx = sparse90
    dense = len(onnx)
    tensors = initializers(onnx)
    assert len(encode_sparse(tensors)) <= 0.15 * dense
    assert len(encode_sparse(tensors, int8=True)) <= 0.05 * dense


def test_int8_model_runs_and_keeps_the_baseline_accurate():
    spec = get_spec("mnist-resnet")
    onnx, _ = export_onnx(spec.model, spec.example_input)
    int8 = quantize_int8(onnx, calibration(spec, 128, 0).x.numpy())
    x, y = spec.split.test_x.numpy(), spec.split.test_y.numpy()
    assert len(int8) < 0.5 * len(onnx)
    assert onnx_accuracy(int8, x, y) >= onnx_accuracy(onnx, x, y) - 0.01


def test_variants_report_every_form(sparse90):
    spec, onnx = sparse90
    base, _ = export_onnx(spec.model, spec.example_input)
    report = variants(onnx, base, spec.split.test_x.numpy()[:300], spec.split.test_y.numpy()[:300],
                      calibration(spec, 64, 0).x.numpy(), (1, 28, 28))
    forms = [r["form"] for r in report.rows]
    assert forms[0] == "baseline dense ONNX" and len(forms) == 6
    runnable = {r["form"] for r in report.rows if r["latency_ms"] is not None}
    assert runnable == {"baseline dense ONNX", "pruned dense ONNX", "int8 ONNX (static, per-channel)"}
    assert all(0 <= r["accuracy"] <= 1 and r["bytes"] > 0 for r in report.rows)
    pruned = next(r for r in report.rows if r["form"] == "pruned dense ONNX")
    assert pruned["bytes"] == len(onnx) and pruned["size_vs_dense"] == 1.0


def test_deploy_command_writes_int8_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prune", "digits-mlp", "--method", "unstructured", "--ratio", "0.5", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["deploy", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "deploy.json").read_text())
    assert saved["rows"] == rows and (out / "model.int8.onnx").stat().st_size > 0
    assert main(["deploy", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prunelab: error:")

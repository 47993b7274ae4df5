"""int8 after the last stage (issue 14, recipes "... -> int8"): the config carries it and round-trips, older
configs read as float, it is refused where it cannot apply; a run quantises the pruned model's ONNX with
onnxruntime and its recorded accuracy is what onnxruntime measures on the file it wrote; the CLI writes and replays
it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.config import PruneConfig
from core.errors import PruneLabError
from core.metric_keys import latency_key
from core.workflows import run_and_record
from tests.conftest import get_spec

ROOT = Path(__file__).resolve().parents[2]


def _recipe(**extra) -> PruneConfig:
    return PruneConfig("digits-mlp", "neuron", {"fc1": 0.25}, then=({"method": "unstructured",
                                                                     "ratios": {"fc2": 0.5}},), **extra)


def test_int8_round_trips_ends_the_methods_text_and_older_configs_read_as_float():
    config = _recipe(quantize="int8")
    assert PruneConfig.from_json(config.to_json()) == config
    assert config.methods_text() == "neuron → unstructured → int8"
    assert all(stage.quantize == "none" for stage in config.stages())  # it follows the stages, it is none of them
    v4 = {k: v for k, v in config.to_dict().items() if k != "quantize"} | {"version": 4}
    assert PruneConfig.from_dict(v4).quantize == "none"


@pytest.mark.parametrize(("change", "message"), [
    ({"quantize": "int4"}, "unknown quantize 'int4'; choose one of none, int8"),
    ({"then": [{"method": "unstructured", "ratios": {"fc2": 0.5}, "quantize": "int8"}]},
     r"stage 2 has quantize: it applies after the last stage"),
])
def test_int8_where_it_cannot_apply_is_refused_in_one_line(change, message):
    with pytest.raises(PruneLabError, match=message) as info:
        PruneConfig.from_dict({**_recipe().to_dict(), **change})
    assert "\n" not in str(info.value)


def _onnxruntime_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float((logits.argmax(-1) == y).mean())


def test_a_recipe_then_int8_records_what_onnxruntime_measures_on_the_written_file(tmp_path):
    spec = get_spec("digits-mlp")
    out, paths = run_and_record(spec, _recipe(quantize="int8", model_fingerprint=spec.fingerprint), tmp_path / "run",
                                batches=(1,))
    int8_file = tmp_path / "run" / "model.int8.onnx"
    assert paths["model.int8.onnx"] == int8_file and int8_file.is_file()
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["int8"]
    x, y = spec.split.test_x.numpy(), spec.split.test_y.numpy()
    assert recorded["accuracy"] == _onnxruntime_accuracy(int8_file, x, y)
    assert recorded["onnx_bytes"] == int8_file.stat().st_size < out.pruned["onnx_bytes"]  # int8 weights: smaller
    assert abs(recorded["accuracy"] - out.pruned["accuracy"]) < 0.03  # quantisation costs little on this model
    assert recorded[latency_key(1)] > 0  # timed beside the float models, under the same load
    assert "QuantizeLinear" in _ops(int8_file)


def _ops(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.slow
def test_the_cli_quantises_and_apply_replays_the_same_int8_figures(tmp_path):
    env_home = {"PRUNELAB_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **env_home}, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    printed = cli("prune", "digits-mlp", "--method", "unstructured", "--ratio", "0.5", "--finetune-epochs", "0",
                  "--quantize", "int8", "--latency-batches", "1", "--out", str(tmp_path / "a"))
    assert "pruned, int8" in printed and "model.int8.onnx" in printed
    assert json.loads((tmp_path / "a" / "config.json").read_text())["quantize"] == "int8"
    cli("apply", str(tmp_path / "a" / "config.json"), "--latency-batches", "1", "--out", str(tmp_path / "b"))
    first, again = (json.loads((tmp_path / d / "metrics.json").read_text())["int8"] for d in ("a", "b"))
    assert (again["accuracy"], again["onnx_bytes"]) == (first["accuracy"], first["onnx_bytes"])


def test_measuring_deployable_forms_keeps_the_runs_own_int8_file(tmp_path):
    """`prunelab deploy` (Export's "Measure deployable forms") measures the int8 model the run made and recorded,
    and never writes another over it: the file stays the one metrics.json measured."""
    from core.deploy import deploy_folder

    spec = get_spec("digits-mlp")
    run_and_record(spec, PruneConfig("digits-mlp", "unstructured", {"fc1": 0.5}, quantize="int8",
                                     model_fingerprint=spec.fingerprint), tmp_path / "run", batches=(1,))
    int8_file = tmp_path / "run" / "model.int8.onnx"
    before = (int8_file.read_bytes(), int8_file.stat().st_mtime_ns)
    report = deploy_folder(tmp_path / "run", spec=spec)
    assert (int8_file.read_bytes(), int8_file.stat().st_mtime_ns) == before
    row = next(r for r in report.rows if r["form"].startswith("int8"))
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["int8"]
    assert (row["bytes"], row["accuracy"]) == (recorded["onnx_bytes"], recorded["accuracy"])

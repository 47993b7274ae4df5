"""Latency in onnxruntime: well-formed statistics with their settings recorded (never a timing threshold)."""

from __future__ import annotations

import dataclasses

import pytest

from core.evaluate import evaluate
from core.experiment import LATENCY_BATCHES, measure
from core.export import export_onnx
from core.latency import Latency, measure_interleaved, session
from core.metrics import static_metrics
from tests.conftest import get_spec


@pytest.fixture(scope="module")
def mlp_onnx() -> bytes:
    spec = get_spec("digits-mlp")
    return export_onnx(spec.model, spec.example_input)[0]


@pytest.mark.parametrize("batch, threads", [(1, 1), (7, 2)])
def test_measure_statistics_and_settings(mlp_onnx, batch, threads):
    lat = measure_interleaved({"m": mlp_onnx}, (64,), batch=batch, threads=threads, warmup=3, rounds=4)["m"]
    assert isinstance(lat, Latency)
    assert 0 < lat.median_ms <= lat.p90_ms
    assert lat.repeats >= 4 * 5  # rounds x at least 5 runs each
    assert (lat.batch, lat.threads, lat.warmup) == (batch, threads, 3)
    assert lat.runtime == "onnxruntime-cpu"
    assert lat.to_dict() == dataclasses.asdict(lat)
    assert set(lat.to_dict()) == {"median_ms", "p90_ms", "batch", "threads", "warmup", "repeats", "runtime"}


def test_interleaved_rounds_time_every_model_and_rank_a_much_larger_one_slower(mlp_onnx):
    """digits-mlp does ~34 kFLOPs per image, mnist-resnet ~40 MFLOPs: a 1000x gap no machine load hides."""
    big = get_spec("mnist-resnet")
    resnet_onnx = export_onnx(big.model, big.example_input)[0]
    # the same input shape is needed for both: time the MLP file twice and the ResNet on its own input
    same = measure_interleaved({"a": mlp_onnx, "b": mlp_onnx}, (64,), rounds=3)
    # both timed in every round: at least 5 runs a round each (the count per round follows each one's warm-up
    # speed, which machine load can tip either way, so equal counts are not guaranteed even for one file)
    assert set(same) == {"a", "b"} and min(same["a"].repeats, same["b"].repeats) >= 3 * 5
    mlp = measure_interleaved({"mlp": mlp_onnx}, (64,), rounds=3)["mlp"]
    resnet = measure_interleaved({"resnet": resnet_onnx}, (1, 28, 28), rounds=3)["resnet"]
    assert resnet.median_ms > 5 * mlp.median_ms


def test_session_pins_threads_and_uses_the_cpu(mlp_onnx):
    for threads in (1, 2):
        sess = session(mlp_onnx, threads=threads)
        options = sess.get_session_options()
        assert options.intra_op_num_threads == threads
        assert options.inter_op_num_threads == 1
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert [i.name for i in sess.get_inputs()] == ["input"]


def test_experiment_measure_contains_every_metric(mlp_onnx):
    spec = get_spec("digits-mlp")
    metrics = measure(spec.model, spec, mlp_onnx, threads=1)
    assert LATENCY_BATCHES == (1, 32)
    for key in ("latency_ms", "latency_p90_ms", "latency_ms_batch32", "latency_p90_ms_batch32"):
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert metrics["latency_ms"] <= metrics["latency_p90_ms"]
    assert metrics["latency_ms_batch32"] <= metrics["latency_p90_ms_batch32"]
    assert metrics["latency_threads"] == 1
    assert metrics["onnx_bytes"] == len(mlp_onnx)
    assert "onnxruntime" in metrics["runtime"] and "torch" in metrics["runtime"]
    assert {k: metrics[k] for k in static_metrics(spec.model, spec.example_input)} == static_metrics(
        spec.model, spec.example_input)
    assert metrics["accuracy"] == evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]

"""A text model whose vocabulary has fewer than 1,000 tokens is measured like any other. Latency timing fed token
ids up to 999 whatever the vocabulary, so a 64-token model crashed in onnxruntime (and in eager torch) the moment
its baseline was timed (issue 13). Ids are now drawn as the ONNX check draws them (core.data.random_inputs): from 1
to the largest id of the model's example input, so every id is one its embedding table has."""

from __future__ import annotations

import torch
from torch import nn

from core import experiment
from core.export import export_onnx
from core.latency import measure_cached, measure_interleaved, measure_torch
from core.metric_keys import latency_key
from core.spec import ModelSpec, fingerprint

VOCAB = 64


class TinyText(nn.Module):
    """Token ids -> embedding -> mean over tokens -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.fc1 = nn.Linear(16, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc1(self.embed(ids).mean(1))))


def _spec() -> ModelSpec:
    torch.manual_seed(0)
    model = TinyText().eval()
    example = torch.randint(1, VOCAB, (1, 12))
    example[0, 0] = VOCAB - 1  # the example reaches the top of the vocabulary
    return ModelSpec("tiny-text", model, example, None, "64-token text classifier", fingerprint(model))


def test_the_baseline_of_a_64_token_model_is_timed_in_onnxruntime_and_torch():
    spec = _spec()
    base = experiment.baseline(spec, batches=(1, 8))
    assert "onnx_error" not in base.metrics, base.metrics.get("onnx_error")
    for batch in (1, 8):
        assert base.metrics[latency_key(batch)] > 0
        assert base.metrics[latency_key(batch, runtime="torch")] > 0


def test_every_timer_draws_ids_the_embedding_has():
    spec = _spec()
    onnx, _ = export_onnx(spec.model, spec.example_input)
    shape = tuple(spec.example_input.shape[1:])
    bound = int(spec.example_input.max())
    assert measure_interleaved({"m": onnx}, shape, batch=4, max_id=bound, rounds=2)["m"].median_ms > 0
    assert measure_torch({"m": spec.model}, shape, batch=4, max_id=bound, rounds=2)["m"].median_ms > 0
    assert measure_cached(onnx, shape, batch=4, max_id=bound).median_ms > 0


def test_per_layer_profiling_feeds_token_ids():
    """The Sensitivity page's per-unit latency profiles the baseline's ONNX file: zeros as float32 were fed to a
    model that takes int64 ids."""
    from core.latency import profile_layers

    spec = _spec()
    onnx, _ = export_onnx(spec.model, spec.example_input)
    times = profile_layers(onnx, tuple(spec.example_input.shape[1:]), {"embed", "fc1", "head"}, batch=4, runs=2,
                           max_id=int(spec.example_input.max()))
    assert set(times) <= {"embed", "fc1", "head"} and times

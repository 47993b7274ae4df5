"""ONNX export of base, channel-pruned and unstructured-pruned models: one self-contained file with a
symbolic batch dimension, numerically equal to torch in onnxruntime, zeros baked in."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import external_data_helper, numpy_helper

from core.config import PruneConfig
from core.data import random_inputs
from core.errors import PruneLabError
from core.export import INPUT_NAME, OUTPUT_NAME, TOLERANCE, check_onnx, export_onnx
from core.graph import channel_units, unstructured_units
from core.latency import session
from core.prune import apply
from core.prune.unstructured import pruning_hooks
from tests.conftest import get_spec

VARIANTS = ("base", "channel-0.5", "unstructured-0.8")
_CACHE: dict[tuple[str, str], tuple] = {}


def _exported(spec, variant: str):
    """(torch model, removed, onnx bytes, reported error), exported once per model and variant."""
    key = (spec.name, variant)
    if key not in _CACHE:
        if variant == "base":
            model, removed = spec.model, {}
        else:
            method, ratio = variant.split("-")
            units = (channel_units(spec.model, spec.example_input) if method == "channel"
                     else unstructured_units(spec.model))
            ratios = {u.name: float(ratio) for u in units}
            result = apply(spec, PruneConfig(model=spec.name, method=method, ratios=ratios))
            model, removed = result.model, result.removed
        data, error = export_onnx(model, spec.example_input)
        _CACHE[key] = (model, removed, data, error)
    return _CACHE[key]


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnxruntime_matches_torch(spec, variant):
    model, _, data, error = _exported(spec, variant)
    assert 0.0 <= error <= TOLERANCE
    sess = session(data)
    gen = torch.Generator().manual_seed(42)
    worst = 0.0
    for batch in (1, 7, 32):
        random_x = random_inputs(spec.example_input, batch, gen)  # token ids for a language model
        real_x = spec.split.test_x[100:100 + batch]
        for x in (random_x, real_x):
            with torch.no_grad():
                expected = model.eval()(x).numpy()
            (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            assert got.shape == expected.shape == (batch, *_output_shape(spec))
            worst = max(worst, float(np.abs(got - expected).max()))
    assert worst <= 1e-4, f"{spec.name} {variant}: max |ort - torch| = {worst:.2e}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_single_file_with_symbolic_batch(spec, variant):
    _, _, data, _ = _exported(spec, variant)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    tensors = list(proto.graph.initializer)
    assert tensors
    for t in tensors:
        assert not external_data_helper.uses_external_data(t), t.name
        assert t.data_location != onnx.TensorProto.EXTERNAL, t.name
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    dims = lambda value: list(value.type.tensor_type.shape.dim)  # noqa: E731
    inp, out = dims(proto.graph.input[0]), dims(proto.graph.output[0])
    assert inp[0].dim_param and not inp[0].HasField("dim_value"), "input batch is not symbolic"
    assert out[0].dim_param and not out[0].HasField("dim_value"), "output batch is not symbolic"
    assert inp[0].dim_param == out[0].dim_param  # the output's batch is the input's batch
    assert [d.dim_value for d in inp[1:]] == list(spec.example_input.shape[1:])
    assert [d.dim_value for d in out[1:]] == list(_output_shape(spec))


def _output_shape(spec) -> tuple[int, ...]:
    """One example's output: ten digit scores; a language model's next-token logits at every position."""
    return (10,) if spec.split.test_y.dim() == 1 else (*spec.example_input.shape[1:], spec.model.head.out_features)


def test_pruned_files_are_smaller_or_sparser(spec):
    base = _exported(spec, "base")[2]
    channel = _exported(spec, "channel-0.5")[2]
    assert len(channel) < 0.8 * len(base)


def _zero_weights(data: bytes) -> int:
    return sum(int((numpy_helper.to_array(t) == 0).sum()) for t in onnx.load_from_string(data).graph.initializer)


def test_unstructured_zeros_are_baked_in(spec):
    _, removed, data, _ = _exported(spec, "unstructured-0.8")
    assert sum(removed.values()) > 0
    assert _zero_weights(data) >= sum(removed.values())
    assert _zero_weights(_exported(spec, "base")[2]) < sum(removed.values()) / 100  # the base file is dense


def test_export_leaves_the_pruned_model_as_it_was():
    spec = get_spec("digits-mlp")
    model = _exported(spec, "unstructured-0.8")[0]
    assert len(list(pruning_hooks(model))) == 3  # masks stay: the export folds a copy
    assert {n for n, _ in model.named_buffers()} == {"fc1.weight_mask", "fc2.weight_mask", "fc3.weight_mask"}


def test_export_writes_the_same_bytes_to_a_path(tmp_path):
    spec = get_spec("digits-mlp")
    path = tmp_path / "sub" / "model.onnx"
    data, _ = export_onnx(spec.model, spec.example_input, path=path)
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temp files, no external data


def test_check_onnx_accepts_the_same_model_and_rejects_another():
    spec = get_spec("digits-mlp")
    _, _, data, _ = _exported(spec, "base")
    assert check_onnx(data, spec.model, spec.example_input) <= TOLERANCE
    other = copy.deepcopy(spec.model)
    with torch.no_grad():
        other.fc3.bias.add_(0.01)  # a small but real difference
    with pytest.raises(PruneLabError, match="differs from torch"):
        check_onnx(data, other, spec.example_input)
    pruned = _exported(spec, "unstructured-0.8")[0]
    with pytest.raises(PruneLabError, match="differs from torch"):
        check_onnx(data, pruned, spec.example_input)

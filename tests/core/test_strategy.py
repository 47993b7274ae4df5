"""The strategy helper against the source document's decision guide, one case per line of the guide."""

from __future__ import annotations

import pytest

from core import schedule_evidence
from core.errors import PruneLabError
from core.strategy import Situation, detect_family, recommend
from tests.conftest import get_spec


@pytest.fixture(autouse=True)
def _guide_without_measurements(tmp_path_factory, monkeypatch):
    """The guide itself: no schedules evidence (core/schedule_evidence.json would change gradual answers where a
    schedule measured below one-shot; tests/core/test_strategy_evidence.py covers that)."""
    monkeypatch.setattr(schedule_evidence, "PATH", tmp_path_factory.mktemp("no-evidence") / "none.json")


@pytest.mark.parametrize("situation, method", [
    # What's your bottleneck?
    (Situation("memory", "small", "cpu", "cnn"), "unstructured"),  # memory -> aggressive weight pruning
    (Situation("memory", "small", "cpu", "mlp"), "neuron"),  # ... or neuron pruning
    (Situation("speed", "small", "cpu", "cnn"), "channel"),  # speed -> filter pruning
    (Situation("hardware", "small", "cpu", "cnn"), "channel"),  # hardware constraints -> structured
    # What's your hardware?
    (Situation("memory", "small", "gpu", "cnn"), "unstructured"),  # GPUs -> unstructured is okay
    (Situation("memory", "small", "mobile", "cnn"), "channel"),  # mobile -> structured is critical
    (Situation("memory", "small", "mobile", "mlp"), "neuron"),
    (Situation("speed", "small", "specialized", "cnn"), "block"),  # specialised hardware -> block pruning
    # What's your model?
    (Situation("speed", "small", "cpu", "cnn"), "channel"),  # CNN -> filter pruning
    (Situation("speed", "small", "cpu", "transformer"), "head"),  # transformer -> attention heads + layers
    (Situation("speed", "small", "cpu", "mlp"), "neuron"),  # MLP -> neuron or weight pruning
    (Situation("speed", "small", "gpu", "transformer"), "nm"),  # speed on GPUs: 2:4 sparse tensor cores
])
def test_method_follows_the_guide(situation, method):
    rec = recommend(situation)
    assert rec.method == method
    assert rec.reason and "\n" not in rec.reason


@pytest.mark.parametrize("loss, method, schedule", [
    ("none", "channel", "iterative"),  # can't afford loss -> iterative ...
    ("none", "unstructured", "dynamic"),  # ... or dynamic pruning
    ("tolerable", "channel", "oneshot"),  # 2-5% tolerable -> aggressive one-shot
    ("tolerable", "unstructured", "oneshot"),
])
def test_schedule_follows_the_accepted_loss(loss, method, schedule):
    bottleneck = "speed" if method == "channel" else "memory"
    rec = recommend(Situation(bottleneck, loss, "cpu", "cnn"))
    assert (rec.method, rec.schedule) == (method, schedule)
    assert rec.ratio == (0.3 if loss == "none" else 0.7)  # conservative first, aggressive when loss is ok


def test_transformers_get_heads_then_layers_and_a_gate_criterion():
    rec = recommend(Situation("speed", "small", "cpu", "transformer"))
    assert rec.criterion == "taylor" and "layer" in rec.also


@pytest.mark.parametrize("name, family", [("mnist-resnet", "cnn"), ("mnist-mobilenet", "cnn"),
                                          ("digits-mlp", "mlp"), ("mnist-vit", "transformer")])
def test_family_is_detected(name, family):
    assert detect_family(get_spec(name).model) == family


def test_unknown_answers_are_refused():
    with pytest.raises(PruneLabError, match="unknown hardware 'tpu'"):
        Situation("speed", "small", "tpu", "cnn")


@pytest.mark.parametrize("family", ["transformer", "cnn", "mlp"])
def test_a_model_without_data_is_never_offered_a_criterion_that_needs_data(family):
    """A data-less transformer was told to rank heads by taylor (gate gradients on noise inputs mean little, and
    the Tune page does not even offer taylor without data)."""
    from core.importance import REGISTRY

    for bottleneck in ("memory", "speed", "hardware"):
        rec = recommend(Situation(bottleneck, "small", "cpu", family, has_data=False))
        assert not REGISTRY[rec.criterion].uses_data, rec
    assert recommend(Situation("speed", "small", "cpu", "transformer")).criterion == "taylor"  # with data

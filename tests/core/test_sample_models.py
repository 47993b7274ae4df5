"""The bundled sample models: committed weights load safely and strictly, and reach their promised accuracy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.data import load_split
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.models import available, load
from core.spec import fingerprint
from sample_models import SAMPLES
from tests.conftest import SAMPLE_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_registry_lists_every_sample():
    assert available(trained_only=True) == sorted(SAMPLES) == SAMPLE_NAMES
    assert len(SAMPLE_NAMES) >= 4


def test_unknown_model_is_a_user_error():
    with pytest.raises(PruneLabError, match="unknown model 'nope'"):
        load("nope")


def test_weights_file_small_safe_and_strict(spec):
    sample = SAMPLES[spec.name]
    path = sample.weights_path
    assert path.is_file()
    assert path.stat().st_size < 2 * 1024 * 1024
    state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code
    assert all(isinstance(t, torch.Tensor) for t in state.values())
    model = sample.build()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(model.state_dict())
    # what the registry loads is exactly the committed file
    assert fingerprint(model) == spec.fingerprint == fingerprint(spec.model)


def test_spec_matches_its_sample(spec):
    sample = SAMPLES[spec.name]
    assert spec.example_input.shape == (1, *sample.input_shape)
    assert spec.split is load_split(sample.dataset)
    assert spec.split.test_x.shape[1:] == sample.input_shape
    assert not spec.model.training
    with torch.no_grad():
        out = spec.model(spec.split.test_x[:3])
    # ten digit classes; a language model: next-token logits at every position
    assert out.shape == ((3, 10) if spec.split.test_y.dim() == 1 else (3, *sample.input_shape, out.shape[-1]))


def test_test_accuracy_reaches_the_promised_minimum(spec):
    sample = SAMPLES[spec.name]
    accuracy = evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]
    print(f"{spec.name}: accuracy {accuracy:.4f} (min {sample.min_accuracy})")
    assert accuracy >= sample.min_accuracy


def test_evaluate_matches_a_reference_computation(spec):
    x, y = spec.split.test_x[:300], spec.split.test_y[:300]
    result = evaluate(spec.model, x, y, batch_size=128)  # uneven batches: 128 + 128 + 44
    with torch.no_grad():
        logits = spec.model(x)
    # a language model's every position is one prediction (logits (N, T, V), targets (N, T))
    assert result["accuracy"] == int((logits.argmax(-1) == y).sum()) / y.numel()
    flat_logits, flat_y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(flat_logits, flat_y).item(), rel=1e-4)


def test_evaluate_restores_training_mode():
    spec = load("digits-mlp")  # a private copy: switching modes must not touch the shared model
    spec.model.train()
    evaluate(spec.model, spec.split.test_x, spec.split.test_y)
    assert spec.model.training


def test_train_script_help():
    proc = subprocess.run([sys.executable, "-m", "sample_models.train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()
    assert "NAME" in proc.stdout and "--seed" in proc.stdout
    # and it refuses names it does not know, without training anything
    bad = subprocess.run([sys.executable, "-m", "sample_models.train", "no-such-model"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr

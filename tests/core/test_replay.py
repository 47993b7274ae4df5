"""Replays are exact: the same config gives the same pruned weights and metrics, the same seed the same
fine-tune, and a written run reads back as it was."""

from __future__ import annotations

import json
import random

import pytest
import torch

from core.config import FinetuneConfig, PruneConfig
from core.experiment import RunOutput, run
from core.finetune import Recipe, fit
from core.graph import channel_units, unstructured_units
from core.metrics import static_metrics
from core.prune import apply
from core.runs import new_run_dir, record
from core.spec import fingerprint
from core.store import Store
from core.workspace import workspace
from tests.conftest import get_spec

STATIC = ("params", "nonzero_params", "size_bytes", "flops", "sparse_flops")


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("method", ["channel", "unstructured"])
def test_same_config_twice_gives_identical_models(spec, method):
    units = (channel_units(spec.model, spec.example_input) if method == "channel"
             else unstructured_units(spec.model))
    rng = random.Random(5)
    config = PruneConfig(model=spec.name, method=method, ratios={u.name: round(rng.uniform(0, 0.9), 2) for u in units},
                         model_fingerprint=spec.fingerprint)
    first, second = apply(spec, config), apply(spec, config)
    assert first.model is not second.model
    _assert_same_state(first.model, second.model)
    assert first.removed == second.removed
    assert static_metrics(first.model, spec.example_input) == static_metrics(second.model, spec.example_input)
    # replaying from the written form is the same as replaying the object
    third = apply(spec, PruneConfig.from_json(config.to_json()))
    _assert_same_state(first.model, third.model)


@pytest.fixture(scope="module")
def two_runs() -> tuple[RunOutput, RunOutput, list[tuple[str, int, int]]]:
    spec = get_spec("digits-mlp")
    config = PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5, "fc2": 0.5},
                         model_fingerprint=spec.fingerprint, seed=3, finetune=FinetuneConfig(epochs=1))
    stages: list[tuple[str, int, int]] = []
    first = run(spec, config, progress=lambda stage, done, total: stages.append((stage, done, total)))
    second = run(spec, config)
    return first, second, stages


def test_run_twice_with_the_same_seed_is_identical(two_runs):
    first, second, _ = two_runs
    assert first.pruned["accuracy"] == second.pruned["accuracy"]
    assert first.pruned["loss"] == second.pruned["loss"]
    for key in STATIC:
        assert first.pruned[key] == second.pruned[key], key
        assert first.baseline[key] == second.baseline[key], key
    assert first.baseline["accuracy"] == second.baseline["accuracy"]
    assert first.finetune_losses == second.finetune_losses and len(first.finetune_losses) == 1
    assert first.removed == second.removed == {"fc1": 64, "fc2": 32}
    _assert_same_state(first.model, second.model)


def test_run_output_is_consistent(two_runs):
    first, _, _ = two_runs
    spec = get_spec("digits-mlp")
    assert first.pruned["params"] < first.baseline["params"]
    assert first.pruned["flops"] < first.baseline["flops"]
    assert static_metrics(first.model, spec.example_input) == {k: first.pruned[k] for k in STATIC}
    assert first.pruned["onnx_bytes"] == len(first.onnx)
    assert first.pruned["accuracy"] > 0.9  # one epoch recovers digits-mlp at 0.5
    assert fingerprint(spec.model) == spec.fingerprint


def test_run_reports_progress_in_order(two_runs):
    _, _, stages = two_runs
    names = list(dict.fromkeys(s for s, _, _ in stages))
    assert names == ["measuring baseline", "pruning", "fine-tuning", "exporting ONNX", "measuring", "done"]
    tuning = [(d, t) for s, d, t in stages if s == "fine-tuning"]
    assert tuning[-1][0] == tuning[-1][1] == 23  # ceil(1437 / 64) steps in one epoch
    assert stages[-1] == ("done", 1, 1)


def test_written_run_reads_back(two_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))  # a private workspace: other tests list runs too
    first, _, _ = two_runs
    folder = new_run_dir("digits-mlp", "channel")
    assert folder.parent == workspace() / "runs" == tmp_path / "home" / "runs"
    with record(folder, first.config) as finish:
        paths = first.write(folder)
        finish(json.loads(first.metrics_json()))
    assert {p.name for p in folder.iterdir()} == {".prunelab-run.json", "config.json", "model.onnx",
                                                  "model.safetensors", "metrics.json"}
    assert paths["model.onnx"].read_bytes() == first.onnx
    (saved,) = Store().list(model="digits-mlp")  # read back through the store, the one listing of runs
    assert saved.config == first.config and saved.folder == folder.resolve()
    assert saved.metrics == json.loads(first.metrics_json()) == json.loads(saved.file("metrics.json").read_text())
    assert saved.metrics["pruned"]["accuracy"] == first.pruned["accuracy"]
    assert saved.file("model.onnx").read_bytes() == first.onnx
    assert Store().list(model="mnist-vit") == []
    # a folder without metrics.json (interrupted) is no finished run, not an error
    half = new_run_dir("digits-mlp", "channel")
    assert half != folder
    first.config.save(half / "config.json")
    Store().sync()
    assert half.resolve() not in [r.folder for r in Store().list(status="done")]


def _finetuned(seed: int) -> torch.nn.Module:
    spec = get_spec("digits-mlp")
    model = apply(spec, PruneConfig(model=spec.name, method="unstructured", ratios={"fc1": 0.5})).model
    fit(model, spec.split.train_x, spec.split.train_y, Recipe(epochs=1, batch_size=128), seed=seed)
    return model


def test_fit_with_the_same_seed_gives_identical_weights():
    a, b, c = _finetuned(4), _finetuned(4), _finetuned(5)
    _assert_same_state(a, b)
    assert not torch.equal(a.fc2.weight, c.fc2.weight)


def test_fit_progress_reaches_total():
    spec = get_spec("digits-mlp")
    model = apply(spec, PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.3})).model
    calls: list[tuple[int, int, dict]] = []
    losses = fit(model, spec.split.train_x, spec.split.train_y, Recipe(epochs=2, batch_size=256), seed=0,
                 progress=lambda done, total, info: calls.append((done, total, dict(info))))
    total = 2 * -(-1437 // 256)
    assert [c[0] for c in calls] == list(range(1, total + 1))
    assert {c[1] for c in calls} == {total}
    assert calls[-1][0] == calls[-1][1]
    assert [c[2]["epoch"] for c in calls] == [1] * (total // 2) + [2] * (total // 2)
    assert all(c[2]["loss"] >= 0 for c in calls)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert not model.training

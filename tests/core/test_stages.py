"""Recipes: a config may hold ordered stages (`then`), each pruning the model the stage before left. They
round-trip, refuse what cannot work in one line, run as the stages one after another would, and replay through
`prunelab apply` with the same figures."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import cli, schedule
from core.config import PruneConfig
from core.errors import PruneLabError
from core.models import load
from core.plan import plan
from core.prune import apply
from core.workflows import check_units
from tests.conftest import get_spec

ROOT = Path(__file__).resolve().parents[2]

MODEL = "mnist-vit"


def _recipe(spec) -> PruneConfig:
    """The source document's BERT example, scaled: one block dropped, then 30% of the weights of every layer left
    (planned on the model the first stage leaves, whose layers the second stage's ratios name)."""
    _, blocks = plan(spec, "layer", 1 / 6)
    first = PruneConfig(spec.name, "layer", {}, remove_blocks=blocks[:1], model_fingerprint=spec.fingerprint)
    ratios, _ = plan(dataclasses.replace(spec, model=apply(spec, first).model), "unstructured", 0.3)
    return dataclasses.replace(first, then=(PruneConfig(spec.name, "unstructured", ratios),))


def test_a_recipe_round_trips_and_lists_its_stages():
    config = PruneConfig("digits-mlp", "channel", {"fc1": 0.5}, then=[
        {"method": "unstructured", "ratios": {"fc2": 0.3}, "repair": "sparsegpt"},
        {"method": "nm", "ratios": {"fc3": 0.5}}])
    assert [s.method for s in config.stages()] == ["channel", "unstructured", "nm"]
    assert all(not s.then for s in config.stages())
    assert PruneConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["then"][0]["repair"] == "sparsegpt"
    assert config.for_model("renamed").then[1].model == "renamed"


@pytest.mark.parametrize(("then", "message"), [
    ([{"model": "mnist-vit", "method": "unstructured", "ratios": {}}], "stage 2 is for model 'mnist-vit'"),
    ([{"method": "unstructured", "ratios": {}, "model_fingerprint": "abc"}], "only the first stage's model"),
    ([{"method": "unstructured", "ratios": {}, "then": [{"method": "nm", "ratios": {}}]}], "stages of its own"),
    ([{"method": "unstructured", "ratios": {}}, {"method": "channel", "ratios": {}}], r"stage 3 \(channel\) follows"),
    ([{"method": "lottery", "ratios": {}}], "unknown method 'lottery'"),
    ("unstructured", "then must be a list"),
])
def test_stages_that_cannot_work_are_refused_in_one_line(then, message):
    with pytest.raises(PruneLabError, match=message) as info:
        PruneConfig.from_dict({**PruneConfig("digits-mlp", "channel", {"fc1": 0.5}).to_dict(), "then": then})
    assert "\n" not in str(info.value)


def test_stages_run_as_one_after_another_and_the_trajectory_says_which():
    spec = get_spec(MODEL)
    recipe = _recipe(spec)
    ratios = recipe.then[0].ratios
    trained = schedule.train(spec, recipe)
    first = apply(spec, recipe.stages()[0])  # by hand: stage 1, then stage 2 on what it left
    by_hand = apply(dataclasses.replace(spec, model=first.model), recipe.stages()[1])
    for (name, a), (_, b) in zip(trained.model.state_dict().items(), by_hand.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [(p["stage"], p["phase"]) for p in trained.trajectory] == [(1, "baseline"), (1, "pruned"), (2, "pruned")]
    assert [p["step"] for p in trained.trajectory] == [0, 1, 2]
    assert trained.trajectory[1]["params"] < trained.trajectory[0]["params"]  # the block went
    assert trained.trajectory[2]["nonzero_params"] < trained.trajectory[1]["nonzero_params"]  # then the weights
    assert set(trained.removed) == set(recipe.remove_blocks) | {u for u, r in ratios.items() if r > 0}


@pytest.mark.slow  # two measured runs of the recipe: ~45 s (mnist-vit), ~90 s (MiniLM) before the replay ran here
@pytest.mark.parametrize("name", [MODEL, "minilm"])
def test_prunelab_apply_replays_a_recipe_with_the_same_figures(tmp_path, monkeypatch, name):
    """The source document's BERT example as a two-stage recipe, on a ViT and on MiniLM (a pretrained BERT).

    The first run is `prunelab apply` itself, in a fresh process (the entry point); the replay calls the same
    CLI's main in this process (a second fresh process re-imported torch and re-exported the unpruned model:
    ~20-40 s). Both run torch on one thread (this process's setting, see conftest), so the figures compared
    come from the same arithmetic; the replay still shares no state with the first run.
    """
    spec = get_spec(name) if name != "minilm" else load("minilm")
    recipe = _recipe(spec)
    recipe.save(tmp_path / "recipe.json")
    home = tmp_path / "home"

    def argv(out: str) -> list[str]:
        return ["apply", str(tmp_path / "recipe.json"), "--out", str(tmp_path / out), "--latency-batches", "1"]

    done = subprocess.run([sys.executable, "-m", "core.cli", *argv("a")], cwd=ROOT, capture_output=True, text=True,
                          env={"PRUNELAB_HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    assert cli.main(argv("b")) == 0
    figures = []
    for out in ("a", "b"):
        pruned = json.loads((tmp_path / out / "metrics.json").read_text())["pruned"]
        figures.append({k: pruned.get(k) for k in ("params", "nonzero_params", "flops", "accuracy", "fidelity")})
        assert figures[-1]["accuracy" if name != "minilm" else "fidelity"] is not None
        assert PruneConfig.load(tmp_path / out / "config.json") == recipe
    assert figures[0] == figures[1]


def test_a_recipe_says_its_stages_and_repairs_in_order():
    config = PruneConfig("digits-mlp", "channel", {"fc1": 0.5}, repair="lstsq",
                         then=[{"method": "unstructured", "ratios": {"fc2": 0.3}, "repair": "sparsegpt"}])
    assert config.methods_text() == "channel (lstsq repair) → unstructured (sparsegpt repair)"
    assert PruneConfig("digits-mlp", "channel", {}).methods_text() == "channel"


def test_a_stage_naming_layers_of_a_block_an_earlier_stage_removes_is_refused_before_any_work():
    """Stage 2 naming a layer inside the block stage 1 drops would only fail when the run reaches stage 2; it is
    refused when the units are checked (before any cutting), naming the layer, the block and the stage."""
    spec = get_spec(MODEL)
    _, blocks = plan(spec, "layer", 1 / 6)
    inside = next(n for n in plan(spec, "unstructured", 0.3)[0] if n.startswith(blocks[0] + "."))
    config = PruneConfig(spec.name, "layer", {}, remove_blocks=blocks[:1], model_fingerprint=spec.fingerprint,
                         then=({"method": "unstructured", "ratios": {inside: 0.3}},))
    with pytest.raises(PruneLabError, match=rf"stage 2 \(unstructured\) names {inside}, inside {blocks[0]}, "
                                            r"which stage 1 \(layer\) removes") as info:
        check_units(spec, config)
    assert "\n" not in str(info.value)
    check_units(spec, _recipe(spec))  # a recipe planned on what stage 1 leaves passes


def test_a_later_stage_naming_a_unit_the_model_lacks_is_refused():
    config = PruneConfig("digits-mlp", "channel", {"fc1": 0.5}, then=({"method": "unstructured",
                                                                         "ratios": {"fc9": 0.3}},))
    with pytest.raises(PruneLabError, match=r"stage 2: digits-mlp has no unstructured layer\(s\) named fc9"):
        check_units(get_spec("digits-mlp"), config)


def test_a_layer_of_a_removed_block_left_at_ratio_0_is_no_clash():
    """The Tune page lists every layer, sliders at 0 included: only what a stage cuts may clash."""
    spec = get_spec(MODEL)
    _, blocks = plan(spec, "layer", 1 / 6)
    inside = next(n for n in plan(spec, "unstructured", 0.3)[0] if n.startswith(blocks[0] + "."))
    config = PruneConfig(spec.name, "layer", {}, remove_blocks=blocks[:1], model_fingerprint=spec.fingerprint,
                         then=({"method": "unstructured", "ratios": {inside: 0.0}},))
    check_units(spec, config)

"""A pruned Hugging Face model goes back as a Hugging Face folder: `from_pretrained` of the export (transformers'
own loader, the trusted reference) gives the pruned model's outputs, and a cut the config cannot describe is
refused in one line saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from core.config import PruneConfig
from core.errors import PruneLabError
from core.export_formats import load_pruned
from core.export_hf import export_hf
from core.plan import plan
from core.prune import apply
from sample_models.hf_zoo import build

ROOT = Path(__file__).resolve().parents[2]
AUTO = {"Image": transformers.AutoModelForImageClassification,
        "Sequence": transformers.AutoModelForSequenceClassification}

# (zoo model, methods applied one after another) whose result a Hugging Face config can describe
CASES = [("llama-gqa", ("head", "layer")), ("llama-gqa", ("neuron",)), ("vit", ("head", "neuron")),
         ("roberta", ("layer",)), ("gpt2", ("layer",)), ("gpt2", ("unstructured",)), ("bert", ("layer",)),
         ("distilbert", ("layer",)), ("swin", ("unstructured",)), ("convnext", ("unstructured",))]


def _pruned(kind: str, steps: tuple[str, ...]):
    spec = build(kind)
    for method in steps:
        ratios, blocks = plan(spec, method, 0.5)
        if method == "neuron":  # the layers' feed-forward only: a classifier head's hidden layer is no config field
            ratios = {u: r for u, r in ratios.items() if ".layers." in u or ".layer." in u}
        result = apply(spec, PruneConfig(model=spec.name, method=method, ratios=ratios, remove_blocks=blocks))
        spec = type(spec)(**{**spec.__dict__, "model": result.model})
    return spec


def _reloaded(folder: Path) -> torch.nn.Module:
    arch = json.loads((folder / "config.json").read_text())["architectures"][0]
    auto = next(a for key, a in AUTO.items() if key in arch)
    return auto.from_pretrained(str(folder), local_files_only=True).eval()


@pytest.mark.parametrize(("kind", "steps"), CASES, ids=[f"{k}-{'+'.join(s)}" for k, s in CASES])
def test_from_pretrained_of_the_export_equals_the_pruned_model(kind, steps, tmp_path):
    spec = _pruned(kind, steps)
    export_hf(spec.model, tmp_path, spec.example_input)
    reloaded = _reloaded(tmp_path)
    x = spec.split.test_x[:8]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, spec.model.eval()(x), atol=1e-5, rtol=1e-5)
    base = build(kind).model.model.config
    config = json.loads((tmp_path / "config.json").read_text())
    if "layer" in steps:
        assert reloaded.config.num_hidden_layers == base.num_hidden_layers - 1
    if "head" in steps:
        assert reloaded.config.num_attention_heads == base.num_attention_heads // 2
    assert "pruned_heads" not in config


def test_heads_bert_cannot_describe_are_refused_naming_the_tensor(tmp_path):
    """BERT's config derives the head width from hidden_size / heads: two heads of width 8 in a 32-wide model
    cannot be written, so the export says so instead of writing a folder that reloads as something else."""
    spec = _pruned("bert", ("head",))
    with pytest.raises(PruneLabError, match=r"attention\.self\.query\.weight.*export \.pt2") as err:
        export_hf(spec.model, tmp_path, spec.example_input)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "config.json").exists()


def test_a_model_that_is_not_hugging_face_is_refused(tmp_path):
    spec = build("transformer-encoder")
    with pytest.raises(PruneLabError, match="not a Hugging Face model"):
        export_hf(spec.model, tmp_path, spec.example_input)


@pytest.mark.slow
def test_cli_prunes_an_hf_folder_and_exports_a_folder_from_pretrained_loads(tmp_path):
    """The user's path: an HF folder in, layer pruning, `prunelab export --format hf`, from_pretrained out."""
    spec = build("llama-gqa")
    folder = tmp_path / "llama"
    spec.model.model.save_pretrained(folder)
    data = tmp_path / "data.npz"
    np.savez(data, x=spec.split.test_x.numpy(), y=spec.split.test_y.numpy(),
             x_train=spec.split.train_x.numpy(), y_train=spec.split.train_y.numpy())
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "core.cli", *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    done = run("prune", str(folder), "--data", str(data), "--method", "layer", "--ratio", "0.5",
               "--latency-batches", "1", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    done = run("export", str(tmp_path / "run"), "--format", "hf", "--model", str(folder), "--data", str(data),
               "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    reloaded = _reloaded(tmp_path / "out")
    assert reloaded.config.num_hidden_layers == 1
    assert "from_pretrained reloads it" in done.stdout
    # the run's own pruned model, rebuilt from its weights: what the folder must reproduce
    pruned = load_pruned(spec.model, PruneConfig.load(tmp_path / "run" / "config.json"),
                         tmp_path / "run" / "model.safetensors", spec.example_input)
    x = spec.split.test_x[:8]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, pruned.eval()(x), atol=1e-5, rtol=1e-5)


def test_hf_compatible_keeps_the_layers_units_and_refuses_what_no_config_describes():
    """--hf-compatible: BERT's neuron cut keeps only its layers' feed-forward units (the pooler's hidden layer
    has no config field) and then passes; its head cut is refused in one line before any training."""
    from core.export_hf import check_hf_compatible, layer_stack_units

    spec = build("bert")
    ratios, _ = plan(spec, "neuron", 0.5)
    kept = layer_stack_units(spec.model, ratios)
    assert set(kept) < set(ratios) and all(".encoder.layer." in u for u in kept)
    check_hf_compatible(spec, PruneConfig(model=spec.name, method="neuron", ratios=kept))
    with pytest.raises(PruneLabError, match="pooler"):
        check_hf_compatible(spec, PruneConfig(model=spec.name, method="neuron", ratios=ratios))
    heads, _ = plan(spec, "head", 0.5)
    with pytest.raises(PruneLabError, match=r"^--hf-compatible: .*export \.pt2") as err:
        check_hf_compatible(spec, PruneConfig(model=spec.name, method="head", ratios=heads))
    assert "\n" not in str(err.value)


def test_the_solver_in_hf_compatible_mode_cuts_every_layer_alike():
    from core.allocate import Target
    from core.workflows.solve import SolveRequest, solve

    spec = build("bert")
    request = SolveRequest(Target("params", 1.1), "uniform", "neuron", "l1", hf_compatible=True)
    ratios = solve(spec, request).config(spec).ratios
    inside = {u: r for u, r in ratios.items() if ".encoder.layer." in u}
    assert len(set(inside.values())) == 1 and next(iter(inside.values())) > 0
    assert all(r == 0 for u, r in ratios.items() if u not in inside)  # the pooler's hidden layer stays
    from core.export_hf import check_hf_compatible

    check_hf_compatible(spec, solve(spec, request).config(spec))
    with pytest.raises(PruneLabError, match="uniform strategy"):
        solve(spec, SolveRequest(Target("params", 1.1), "global", "neuron", "l1", hf_compatible=True))

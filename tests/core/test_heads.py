"""Head pruning: removing a head equals zeroing its output, shapes and parameter counts shrink exactly,
the result exports to ONNX and still trains; gate-gradient importance matches finite differences;
nn.MultiheadAttention converts to an equivalent module whose heads can be removed."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import PruneLabError
from core.export import export_onnx
from core.importance.heads import head_gates, head_grid, head_importance
from core.importance.signals import Calibration
from core.models import load
from core.prune import calibration
from core.prune.heads import SplitAttention, convert_multihead_attention, heads_to_remove, remove_heads
from core.spec import fingerprint
from core.structure import attention_modules
from sample_models.architectures import Block
from tests.conftest import get_spec


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _initializer_elements(onnx_bytes: bytes) -> tuple[int, list[list[int]]]:
    """Total elements of the ONNX graph's initializers, and each one's shape."""
    shapes = [list(t.dims) for t in onnx.load_from_string(onnx_bytes).graph.initializer]
    return sum(int(torch.tensor(s).prod()) for s in shapes), shapes


def _zero_v_rows(model: nn.Module, name: str, drop: list[int]) -> None:
    """Zero the v rows (weight and bias) of heads `drop`: their attention output becomes exactly zero."""
    attn = model.get_submodule(name)
    width = attn.v.out_features // attn.num_heads
    rows = [h * width + i for h in drop for i in range(width)]
    with torch.no_grad():
        attn.v.weight[rows] = 0
        attn.v.bias[rows] = 0


class TinyNet(nn.Module):
    """Token features -> one transformer block (4 heads of width 2) -> mean over tokens -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.block = Block(8, 4, 16)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(x)).mean(1))


class MhaNet(nn.Module):
    """The same shape of model around an nn.MultiheadAttention used for self-attention."""

    def __init__(self, batch_first: bool, bias: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(5, 16)
        self.attn = nn.MultiheadAttention(16, 4, bias=bias, batch_first=batch_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h if self.batch_first else h.transpose(0, 1)
        out, _ = self.attn(h, h, h, need_weights=False)
        out = out if self.batch_first else out.transpose(0, 1)
        return self.head(out.mean(1))


def _seeded(build, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build().eval()


# ---------------------------------------------------------------------------------------------------
# mnist-vit: 4 blocks x 4 heads of width 16 (dim 64), half the heads of every block removed


@pytest.fixture(scope="module")
def vit() -> SimpleNamespace:
    spec = get_spec("mnist-vit")
    calib = calibration(spec, 256, seed=0)
    scores = head_importance(copy.deepcopy(spec.model), calib)
    plan = heads_to_remove(scores, {name: 0.5 for name in scores})
    pruned = copy.deepcopy(spec.model)
    removed = remove_heads(pruned, plan)
    return SimpleNamespace(spec=spec, calib=calib, scores=scores, plan=plan, pruned=pruned.eval(), removed=removed)


# per block: q, k, v each lose 2 heads x 16 rows of 64 weights + 32 biases; proj loses 32 input columns x 64 outputs
VIT_REMOVED_PARAMS = 4 * (3 * (32 * 64 + 32) + 64 * 32)  # = 33,152


def test_finds_every_block_of_mnist_vit():
    assert attention_modules(get_spec("mnist-vit").model) == {f"blocks.{i}.attn": 4 for i in range(4)}
    assert attention_modules(get_spec("mnist-resnet").model) == {}


def test_removing_half_the_heads_shrinks_every_block_exactly(vit):
    assert vit.removed == {f"blocks.{i}.attn": 2 for i in range(4)}
    assert all(len(drop) == 2 for drop in vit.plan.values())
    for i in range(4):
        attn = vit.pruned.blocks[i].attn
        assert attn.num_heads == 2
        for proj in (attn.q, attn.k, attn.v):
            assert proj.out_features == 32 and proj.weight.shape == (32, 64) and proj.bias.shape == (32,)
        assert attn.proj.in_features == 32 and attn.proj.weight.shape == (64, 32) and attn.proj.bias.shape == (64,)
    assert _params(vit.spec.model) - _params(vit.pruned) == VIT_REMOVED_PARAMS == 33152
    with torch.no_grad():
        assert vit.pruned(vit.spec.split.test_x[:5]).shape == (5, 10)
    assert attention_modules(vit.spec.model) == {f"blocks.{i}.attn": 4 for i in range(4)}  # the original is intact


def test_removing_heads_equals_zeroing_their_output(vit):
    base = vit.spec.model
    zeroed = copy.deepcopy(base)
    for name, drop in vit.plan.items():
        _zero_v_rows(zeroed, name, drop)
    gates = {name: torch.tensor([0.0 if h in drop else 1.0 for h in range(4)]) for name, drop in vit.plan.items()}
    x = vit.spec.split.test_x[:32]
    with torch.no_grad():
        pruned, original = vit.pruned(x), base(x)
        with head_gates(base, gates):
            gated = base(x)
        torch.testing.assert_close(pruned, zeroed(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(pruned, gated, atol=1e-5, rtol=0)
        assert (pruned - original).abs().max() > 1e-2  # the heads did matter: the check above is not vacuous
        assert torch.equal(base(x), original)  # gate hooks are gone


def test_pruned_vit_exports_to_onnx_with_smaller_weights(vit):
    before, _ = export_onnx(vit.spec.model, vit.spec.example_input)
    after, worst = export_onnx(vit.pruned, vit.spec.example_input)  # raises if onnxruntime disagrees with torch
    assert worst <= 1e-4
    (n_before, shapes_before), (n_after, shapes_after) = _initializer_elements(before), _initializer_elements(after)
    assert n_before - n_after == VIT_REMOVED_PARAMS
    assert shapes_before.count([64, 64]) == 16 and shapes_after.count([64, 64]) == 0  # q, k, v, proj of 4 blocks
    assert shapes_after.count([64, 32]) == 12 and shapes_after.count([32, 64]) == 4  # q/k/v (transposed), proj
    assert len(after) < len(before)


def test_pruned_vit_still_fine_tunes(vit):
    model = copy.deepcopy(vit.pruned).train()
    x, y = vit.spec.split.train_x[:64], vit.spec.split.train_y[:64]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < losses[2] < losses[1] < losses[0]  # 0.80 -> 0.48 -> 0.28 -> 0.18 when measured
    for name, p in model.named_parameters():
        assert p.shape == vit.pruned.get_parameter(name).shape
    assert model.blocks[0].attn.q.weight.grad.shape == (32, 64)


def test_head_grid_is_modules_by_heads(vit):
    grid = head_grid(copy.deepcopy(vit.spec.model), vit.calib)
    assert list(grid.index) == [f"blocks.{i}.attn" for i in range(4)] and list(grid.columns) == [0, 1, 2, 3]
    for name, row in grid.iterrows():
        assert torch.allclose(torch.tensor(row.to_numpy()), vit.scores[name].double(), rtol=1e-6, atol=0)
    assert (grid.to_numpy() > 0).all()
    # a module with fewer heads pads its row with NaN
    smaller = copy.deepcopy(vit.spec.model)
    remove_heads(smaller, {"blocks.3.attn": [0, 1, 2], "blocks.1.attn": [3]})
    grid = head_grid(smaller, vit.calib)
    assert grid.isna().sum(axis=1).tolist() == [0, 1, 0, 3]


# ---------------------------------------------------------------------------------------------------
# Importance


def test_gate_gradient_matches_finite_differences():
    model = _seeded(TinyNet).double()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 6, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (12,), generator=gen)
    scores = head_importance(model, Calibration(x, y, batch_size=6))["block.attn"]  # two batches of six
    eps, expected = 1e-5, torch.zeros(4, dtype=torch.float64)
    for xb, yb in ((x[:6], y[:6]), (x[6:], y[6:])):
        for h in range(4):
            losses = []
            for g in (1 + eps, 1 - eps):
                gate = torch.ones(4, dtype=torch.float64)
                gate[h] = g
                with torch.no_grad(), head_gates(model, {"block.attn": gate}):
                    losses.append(F.cross_entropy(model(xb), yb).item())
            expected[h] += abs(losses[0] - losses[1]) / (2 * eps) / 2  # mean over the two batches of |dL/dg|
    assert expected.min() > 1e-4 and expected.max() - expected.min() > 1e-3  # distinct, non-trivial scores
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-10)


def test_a_head_with_zero_values_scores_zero(vit):
    model = copy.deepcopy(vit.spec.model)
    _zero_v_rows(model, "blocks.1.attn", [2])
    scores = head_importance(model, vit.calib)
    assert scores["blocks.1.attn"][2] == 0
    assert (scores["blocks.1.attn"][[0, 1, 3]] > 1e-4).all()


def test_importance_leaves_the_model_as_it_was(vit):
    model = copy.deepcopy(vit.spec.model).train()
    before = fingerprint(model)
    head_importance(model, vit.calib)
    assert model.training and fingerprint(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------------
# Choosing heads and validating requests


def test_heads_to_remove_takes_lowest_scores_ties_by_index_and_keeps_one():
    scores = {"a": torch.tensor([0.3, 0.1, 0.1, 0.2]), "b": torch.tensor([1.0, 1.0, 1.0, 1.0]),
              "c": torch.tensor([0.5, 0.1, 0.9]), "e": torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1])}
    assert heads_to_remove(scores, {"a": 0.5, "b": 0.25, "c": 0.0}) == {"a": [1, 2], "b": [0], "c": []}
    assert heads_to_remove(scores, {"a": 0.75}) == {"a": [1, 2, 3]}
    assert heads_to_remove(scores, {"a": 1.0, "c": 1.0}) == {"a": [1, 2, 3], "c": [0, 1]}  # clamped to H - 1
    # Python's round, half to even: 0.5 of 3 heads = round(1.5) = 2, 0.5 of 5 = round(2.5) = 2, 0.1 of 5 = 0
    assert heads_to_remove(scores, {"c": 0.5, "e": 0.5}) == {"c": [0, 1], "e": [3, 4]}
    assert heads_to_remove(scores, {"c": 0.3, "e": 0.1}) == {"c": [1], "e": []}


@pytest.mark.parametrize("ratios, message", [
    ({"nope": 0.5}, "no head scores"),
    ({"a": 1.5}, "outside"),
    ({"a": -0.1}, "outside"),
    ({"a": float("nan")}, "outside"),
])
def test_heads_to_remove_rejects_bad_requests(ratios, message):
    with pytest.raises(PruneLabError, match=message):
        heads_to_remove({"a": torch.tensor([0.3, 0.1])}, ratios)


def test_heads_to_remove_rejects_non_finite_scores():
    with pytest.raises(PruneLabError, match="finite"):
        heads_to_remove({"a": torch.tensor([0.3, float("nan")])}, {"a": 0.5})


@pytest.mark.parametrize("heads, message", [
    ({"block": [0]}, "not an attention module"),
    ({"nope.attn": [0]}, "not an attention module"),
    ({"block.attn": [4]}, r"\[4\] are not in 0..3"),
    ({"block.attn": [-1]}, "not in 0..3"),
    ({"block.attn": [True]}, "not in 0..3"),
    ({"block.attn": [1, 1]}, "duplicate"),
    ({"block.attn": [0, 1, 2, 3]}, "cannot remove all 4 heads"),
    ({"block.attn": [0], "head": [0]}, "not an attention module"),  # one bad entry: nothing is cut
])
def test_remove_heads_rejects_bad_requests_and_cuts_nothing(heads, message):
    model = _seeded(TinyNet)
    before = fingerprint(model)
    with pytest.raises(PruneLabError, match=message):
        remove_heads(model, heads)
    assert fingerprint(model) == before and model.block.attn.num_heads == 4


def test_remove_heads_keeps_dtype_requires_grad_and_accepts_empty_lists():
    model = _seeded(TinyNet).double()
    model.block.attn.k.weight.requires_grad_(False)
    assert remove_heads(model, {"block.attn": []}) == {"block.attn": 0}
    assert remove_heads(model, {"block.attn": [3, 0]}) == {"block.attn": 2}
    attn = model.block.attn
    assert attn.num_heads == 2 and attn.q.weight.dtype == torch.float64 and attn.q.weight.shape == (4, 8)
    assert not attn.k.weight.requires_grad and attn.q.weight.requires_grad and attn.proj.weight.requires_grad
    assert model(torch.randn(2, 6, 5, dtype=torch.float64)).shape == (2, 3)


# ---------------------------------------------------------------------------------------------------
# nn.MultiheadAttention


@pytest.mark.parametrize("batch_first, bias", [(True, True), (False, False)])
def test_multihead_attention_converts_then_loses_a_head_and_exports(batch_first, bias):
    model = _seeded(lambda: MhaNet(batch_first, bias))
    x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
    assert attention_modules(model) == {}
    assert convert_multihead_attention(model) == 1
    assert isinstance(model.attn, SplitAttention) and attention_modules(model) == {"attn": 4}
    assert (model.attn.q.bias is not None) == bias and (model.attn.proj.bias is not None) == bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
    zeroed = copy.deepcopy(model)
    for p in zeroed.attn.v.parameters():  # the head's v rows (and bias, if any)
        with torch.no_grad():
            p[4:8] = 0
    assert remove_heads(model, {"attn": [1]}) == {"attn": 1}
    assert model.attn.num_heads == 3 and model.attn.q.weight.shape == (12, 16) and model.attn.proj.in_features == 12
    with torch.no_grad():
        torch.testing.assert_close(model(x), zeroed(x), atol=1e-5, rtol=0)
    _, worst = export_onnx(model, x[:1])
    assert worst <= 1e-4


@pytest.mark.parametrize("batch_first", [True, False])
def test_split_attention_matches_multihead_attention_with_masks(batch_first):
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    split = SplitAttention.from_multihead(mha)
    b, n = 2, 5
    x = torch.randn(b, n, 16) if batch_first else torch.randn(n, b, 16)
    padding = torch.zeros(b, n, dtype=torch.bool)
    padding[0, -2:] = True
    causal = torch.ones(n, n, dtype=torch.bool).triu(1)
    per_head = torch.randn(b * 4, n, n)
    float_padding = torch.zeros(b, n).masked_fill(padding, float("-inf"))
    cases = [{}, {"key_padding_mask": padding}, {"attn_mask": causal, "is_causal": True},
             {"attn_mask": causal.float() * -1e4}, {"attn_mask": per_head, "key_padding_mask": float_padding}]
    with torch.no_grad():
        for kwargs in cases:
            torch.testing.assert_close(split(x, x, x, **kwargs)[0], mha(x, x, x, **kwargs)[0], atol=1e-5, rtol=0)
        unbatched = x[0] if batch_first else x[:, 0]
        torch.testing.assert_close(split(unbatched, unbatched, unbatched)[0], mha(unbatched, unbatched, unbatched)[0],
                                   atol=1e-5, rtol=0)
    assert split(x, x, x)[1] is None


@pytest.mark.parametrize("mha, message", [
    (nn.MultiheadAttention(16, 4, kdim=8, vdim=8), "kdim/vdim"),
    (nn.MultiheadAttention(16, 4, add_bias_kv=True), "add_bias_kv"),
])
def test_unsupported_multihead_attention_is_named_and_nothing_converts(mha, message):
    model = nn.Sequential(nn.MultiheadAttention(16, 4), nn.Sequential(mha))
    with pytest.raises(PruneLabError, match=rf"^1\.0: .*{message}"):
        convert_multihead_attention(model)
    assert isinstance(model[0], nn.MultiheadAttention)  # checked before anything was replaced


# ---------------------------------------------------------------------------------------------------
# ViT-S/16 (224x224, 12 blocks x 6 heads of width 64, random weights)


def test_vit_s16_loses_half_its_heads_and_exports():
    spec = load("vit-s16")  # a fresh model of our own, not the shared one
    model = spec.model
    unpruned, _ = export_onnx(model, spec.example_input)
    before = _params(model)
    assert attention_modules(model) == {f"blocks.{i}.attn": 6 for i in range(12)}
    assert remove_heads(model, {name: [1, 3, 5] for name in attention_modules(model)}) == {
        f"blocks.{i}.attn": 3 for i in range(12)}
    assert before - _params(model) == 12 * (3 * (192 * 384 + 192) + 384 * 192)  # 3 heads x 64 rows, 384 inputs
    with torch.no_grad():
        assert model(spec.example_input).shape == (1, 1000)
    pruned, worst = export_onnx(model, spec.example_input)
    assert worst <= 1e-4
    # the exporter shares identical initializers (this init's zero biases, unit LayerNorm weights), so
    # count the weight matrices rather than every element: q, k, v (stored transposed) and proj
    shapes_before, shapes_after = _initializer_elements(unpruned)[1], _initializer_elements(pruned)[1]
    assert shapes_before.count([384, 384]) == 48 and shapes_after.count([384, 384]) == 0
    assert shapes_after.count([384, 192]) == 36 and shapes_after.count([192, 384]) == 12
    removed_matrices = 4 * 12 * 4 * 192 * 384  # bytes: 12 blocks x 4 float32 matrices of 384 x 192 removed
    assert 0.99 * removed_matrices < len(unpruned) - len(pruned) < 1.01 * removed_matrices  # 14.15 MB measured


class _FusedAttention(nn.Module):
    """Attention written with one fused weight and no q/k/v modules: nothing PruneLab can read heads from."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.qkv_weight = nn.Parameter(torch.randn(3 * dim, dim) / dim**0.5)
        self.inner = nn.Module()
        self.inner.score_attention = nn.Identity()  # an attention-named child: reported under its parent only
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = (x @ self.qkv_weight.T).chunk(3, -1)
        return self.out(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


def test_unrecognised_attention_is_named_once_in_the_refusal():
    from core import methods

    model = nn.Sequential(nn.Linear(4, 8), _FusedAttention(), nn.Flatten(), nn.Linear(8 * 3, 2))
    model[1].extra = nn.MultiheadAttention(8, 2)  # a second, separate attention-like module (not called)
    why = methods.get("head").why_none(model, torch.zeros(1, 3, 4))
    assert why.startswith("attention modules not recognised: 1 (_FusedAttention)")
    assert "score_attention" not in why and "1.extra" not in why and "channel" in why

"""Semi-structured masks: N:M groups along the input dimension and aligned blocks match hand-computed
references, hold their pattern through installation, fine-tuning and folding on every sample model, and
the folded model exports to ONNX with outputs equal to torch."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import PruneLabError
from core.evaluate import task_loss
from core.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from core.graph import classifier
from core.latency import session
from core.prune.patterns import apply_block, apply_nm, block_mask, block_scores, nm_mask
from core.prune.unstructured import make_permanent, pruning_hooks, refresh_masked
from core.structure import PRUNABLE

# ---------------------------------------------------------------- helpers


def _groups(t: torch.Tensor, m: int) -> torch.Tensor:
    """The full m-groups of t along its input dimension, as rows of m (the trailing partial group dropped)."""
    rows = t.movedim(1, -1)
    full = rows.shape[-1] - rows.shape[-1] % m
    return rows[..., :full].reshape(-1, m)


def _blocks(mask: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Every aligned block of the 2-D view of mask, flattened to one row each (edge blocks padded with -1)."""
    view = mask.reshape(mask.shape[0], -1)
    br, bc = block
    pad = (0, -view.shape[1] % bc, 0, -view.shape[0] % br)
    padded = nn.functional.pad(view, pad, value=-1.0)
    return padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc).transpose(1, 2).reshape(-1, br * bc)


def _assert_all_or_nothing(mask: torch.Tensor, block: tuple[int, int]) -> int:
    """Assert every block of mask is all ones or all zeros; returns the number of pruned blocks."""
    rows = _blocks(mask, block)
    high = rows.max(dim=1).values  # the -1 padding never wins
    low = rows.masked_fill(rows < 0, math.inf).min(dim=1).values
    assert torch.equal(low, high), "a block is partly pruned"
    return int((high == 0).sum())


# ---------------------------------------------------------------- nm_mask


def test_nm_mask_linear_hand_computed():
    scores = torch.tensor([[1.0, 5.0, 3.0, 2.0, 8.0, 7.0, 6.0, 9.0],
                           [0.0, -1.0, 4.0, 4.0, 1.0, 1.0, 1.0, 1.0]])  # second group of row 1: all tied
    expected = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
                             [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])  # ties: the earlier channels kept
    assert torch.equal(nm_mask(scores), expected)
    assert torch.equal(nm_mask(scores, 1, 4), torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                                            [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(nm_mask(scores, 2, 8), torch.tensor([[0.0] * 4 + [1.0, 0.0, 0.0, 1.0],
                                                            [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]))


def test_nm_mask_conv_groups_input_channels_at_each_position():
    # weight (out=1, in=4, kh=1, kw=2): the groups are the 4 input channels at kernel position 0 and at 1
    scores = torch.zeros(1, 4, 1, 2)
    scores[0, :, 0, 0] = torch.tensor([1.0, 4.0, 3.0, 2.0])
    scores[0, :, 0, 1] = torch.tensor([9.0, 0.0, 8.0, 7.0])
    expected = torch.zeros(1, 4, 1, 2)
    expected[0, :, 0, 0] = torch.tensor([0.0, 1.0, 1.0, 0.0])
    expected[0, :, 0, 1] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = nm_mask(scores)
    assert mask.shape == scores.shape
    assert torch.equal(mask, expected)
    # not the groups of the flattened weight, which would be (c0k0, c0k1, c1k0, c1k1) = (1, 9, 4, 0), ...
    assert not torch.equal(mask.flatten(), nm_mask(scores.reshape(1, 8)).flatten())


@pytest.mark.parametrize("shape", [(6, 16), (5, 8, 3, 3), (4, 12, 1, 1), (3, 4, 2, 5)])
@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_nm_mask_keeps_exactly_n_largest_per_group(shape, n, m):
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    mask = nm_mask(scores, n, m)
    assert mask.shape == scores.shape
    groups, kept = _groups(scores, m), _groups(mask, m)
    assert (kept.sum(dim=1) == n).all()
    # the kept ones are the n largest of their group
    assert (groups.masked_fill(kept == 0, math.inf).min(dim=1).values
            >= groups.masked_fill(kept == 1, -math.inf).max(dim=1).values).all()


def test_nm_mask_partial_trailing_group_keeps_ceil_r_n_over_m():
    scores = torch.tensor([[3.0, 1.0, 2.0, 4.0, 5.0, 9.0, 7.0]])  # one full group, then r = 3
    assert torch.equal(nm_mask(scores), torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]]))  # ceil(1.5) = 2
    assert torch.equal(nm_mask(scores, 1, 4), torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]]))  # ceil(.75)
    for width, n, m in [(5, 2, 4), (6, 2, 4), (7, 2, 4), (2, 2, 4), (3, 1, 4), (10, 3, 8), (11, 3, 4)]:
        mask = nm_mask(torch.rand(3, width, 2, 2, generator=torch.Generator().manual_seed(width)), n, m)
        tail = width % m
        per_row = (width // m) * n + math.ceil(tail * n / m)
        assert (mask.movedim(1, -1).sum(dim=-1) == per_row).all(), (width, n, m)


@pytest.mark.parametrize("n, m", [(0, 4), (4, 4), (5, 4), (-1, 4), (2, 0), (1.0, 4)])
def test_nm_mask_rejects_invalid_n_m(n, m):
    with pytest.raises(PruneLabError, match="0 < n < m"):
        nm_mask(torch.rand(4, 8), n, m)


# ---------------------------------------------------------------- block_mask


def test_block_mask_hand_computed_with_edge_blocks():
    # 3x3 in 2x2 blocks: B00 (4 weights), B01 (2: rows 0-1, col 2), B10 (2: row 2, cols 0-1), B11 (1)
    scores = torch.tensor([[1.0, 1.0, 5.0],
                           [1.0, 1.0, 5.0],
                           [4.0, 4.0, 3.0]])
    # sums 4, 10, 8, 3; edge blocks scaled to the full size: mean * 4 -> 4, 20, 16, 12
    assert torch.equal(block_scores(scores, (2, 2)), torch.tensor([[4.0, 20.0], [16.0, 12.0]]))
    # ratio 0.25 -> one block: B00 (its plain sum 4 > B11's 3, but B11's mean is higher)
    assert torch.equal(block_mask(scores, 0.25, (2, 2)), torch.tensor([[0.0, 0.0, 1.0],
                                                                        [0.0, 0.0, 1.0],
                                                                        [1.0, 1.0, 1.0]]))
    assert torch.equal(block_mask(scores, 0.5, (2, 2)), torch.tensor([[0.0, 0.0, 1.0],
                                                                       [0.0, 0.0, 1.0],
                                                                       [1.0, 1.0, 0.0]]))


def test_block_mask_4x1_on_a_conv_weight_uses_the_2d_view():
    # weight (out=8, in=1, kh=1, kw=2) -> view (8, 2) -> four 4x1 blocks: rows 0-3 / 4-7 of each column
    scores = torch.tensor([[1.0, 9.0], [1.0, 9.0], [1.0, 9.0], [1.0, 9.0],
                           [5.0, 2.0], [5.0, 2.0], [5.0, 2.0], [5.0, 0.0]]).view(8, 1, 1, 2)
    # block sums: col 0: 4, 20; col 1: 36, 6 -> ratio 0.5 prunes the 4 and the 6
    expected = torch.tensor([[0.0, 1.0]] * 4 + [[1.0, 0.0]] * 4).view(8, 1, 1, 2)
    mask = block_mask(scores, 0.5)
    assert mask.shape == scores.shape
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("shape", [(10, 3, 3, 3), (16, 8), (7, 5)])
@pytest.mark.parametrize("block", [(4, 1), (2, 2), (1, 4), (3, 5)])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 1.0])
def test_block_mask_prunes_whole_blocks(shape, block, ratio):
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    mask = block_mask(scores, ratio, block)
    assert mask.shape == scores.shape
    rows, cols = shape[0], int(np.prod(shape[1:]))
    n_blocks = math.ceil(rows / block[0]) * math.ceil(cols / block[1])
    # at least one block always stays: an emptied layer would cut the network (core.graph.emptied reports it)
    assert _assert_all_or_nothing(mask, block) == min(round(ratio * n_blocks), n_blocks - 1)
    if ratio == 0:
        assert torch.equal(mask, torch.ones_like(scores))


@pytest.mark.parametrize("ratio, block", [(-0.1, (4, 1)), (1.5, (4, 1)), (0.5, (0, 1)), (0.5, (4,))])
def test_block_mask_rejects_invalid_arguments(ratio, block):
    with pytest.raises(PruneLabError):
        block_mask(torch.rand(8, 8), ratio, block)


# ---------------------------------------------------------------- apply_* on a small model


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4), nn.BatchNorm1d(3))


def test_apply_nm_counts_skips_depthwise_and_uses_given_scores():
    model = _mlp()
    custom = {"0": torch.arange(48.0).view(6, 8)}  # the last two of every four score highest
    result = apply_nm(model, ["0", "2"], scores=custom)
    assert result.removed == {"0": 24} and list(result.skipped) == ["2"]
    assert torch.equal(model[0].weight_mask[0], torch.tensor([0.0, 0.0, 1.0, 1.0] * 2))
    assert not hasattr(model[2], "weight_mask")
    assert apply_nm(_mlp(), {"0": (1, 4)}).removed == {"0": 36}


def test_apply_block_counts_and_skips_ratio_zero():
    model = _mlp()
    removed = apply_block(model, {"0": 0.5, "2": 0.0}, block=(2, 2))
    assert removed == {"0": 24}  # 12 blocks of 4, 6 pruned
    assert not hasattr(model[2], "weight_mask")


@pytest.mark.parametrize("call", [lambda mdl, name: apply_nm(mdl, [name]),
                                  lambda mdl, name: apply_block(mdl, {name: 0.5})])
@pytest.mark.parametrize("name", ["no_such_layer", "3", "1"])
def test_apply_rejects_unknown_and_non_prunable_layers(call, name):
    with pytest.raises(PruneLabError, match=repr(name)):
        call(_mlp(), name)


def test_apply_rejects_scores_of_the_wrong_shape():
    with pytest.raises(PruneLabError, match="shape"):
        apply_nm(_mlp(), ["0"], scores={"0": torch.rand(8, 6)})
    with pytest.raises(PruneLabError, match="no scores"):
        apply_block(_mlp(), {"0": 0.5}, scores={})


# ---------------------------------------------------------------- every sample model, through export

BLOCK = (4, 1)


def _targets(model: nn.Module, example_input: torch.Tensor) -> dict[str, nn.Module]:
    """Every Conv2d/Linear except the classifier."""
    head = classifier(model, example_input)
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE) and m is not head}


def _check_nm(modules: dict[str, nn.Module], names, masks: dict[str, torch.Tensor]) -> None:
    for name in names:
        weight, mask = modules[name].weight.detach(), masks[name]
        assert (_groups(mask, 4).sum(dim=1) == 2).all(), name
        assert (_groups(weight != 0, 4).sum(dim=1) <= 2).all(), name
        assert torch.count_nonzero(weight[mask == 0]) == 0, name


def _check_block(modules: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        weight = modules[name].weight.detach()
        view = weight.reshape(weight.shape[0], -1)
        n_blocks = math.ceil(view.shape[0] / BLOCK[0]) * math.ceil(view.shape[1] / BLOCK[1])
        assert _assert_all_or_nothing(mask, BLOCK) == round(0.5 * n_blocks), name
        assert torch.count_nonzero(weight[mask == 0]) == 0, name


def _train_three_steps(model: nn.Module, spec) -> None:
    """Three SGD steps on 32 training images; asserts the kept weights moved."""
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight_orig")}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    x, y = spec.split.train_x[:32], spec.split.train_y[:32]
    for _ in range(3):
        opt.zero_grad()
        task_loss(model(x), y).backward()  # a language model: next-token cross-entropy
        opt.step()
    model.eval()
    refresh_masked(model)  # recompute weight = weight_orig * mask from the updated weight_orig
    params = dict(model.named_parameters())
    assert any(not torch.equal(params[n], b) for n, b in before.items()), "training changed nothing"


def _export_matches_torch(model: nn.Module, spec) -> None:
    data, error = export_onnx(model, spec.example_input)
    assert error <= 1e-4
    x = spec.split.test_x[:8]
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    (got,) = session(data).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def _prepare(spec) -> tuple[nn.Module, dict[str, nn.Module]]:
    if spec.split is None:
        pytest.skip(f"{spec.name} has no training data")
    model = copy.deepcopy(spec.model)
    return model, _targets(model, spec.example_input)


def test_nm_pattern_survives_training_and_export(spec):
    model, targets = _prepare(spec)
    result = apply_nm(model, list(targets))
    assert set(result.skipped) == {n for n, m in targets.items() if m.weight.shape[1] == 1}
    assert result.removed and set(result.removed) | set(result.skipped) == set(targets)
    masks = {n: targets[n].weight_mask.clone() for n in result.removed}
    _check_nm(targets, result.removed, masks)
    with torch.no_grad():
        assert torch.isfinite(model(spec.example_input)).all()
    _train_three_steps(model, spec)
    _check_nm(targets, result.removed, masks)
    make_permanent(model)
    assert not list(pruning_hooks(model))
    _check_nm(targets, result.removed, masks)
    _export_matches_torch(model, spec)


def test_block_pattern_survives_training_and_export(spec):
    model, targets = _prepare(spec)
    removed = apply_block(model, dict.fromkeys(targets, 0.5), block=BLOCK)
    assert set(removed) == set(targets)
    masks = {n: targets[n].weight_mask.clone() for n in removed}
    assert all(removed[n] == int((masks[n] == 0).sum()) for n in removed)
    _check_block(targets, masks)
    with torch.no_grad():
        assert torch.isfinite(model(spec.example_input)).all()
    _train_three_steps(model, spec)
    _check_block(targets, masks)
    make_permanent(model)
    _check_block(targets, masks)
    _export_matches_torch(model, spec)

"""Layer pruning: the removable residual blocks of every sample and zoo model are found by structure and
shape, block influence scores are exact on hand-built blocks and on a real one, removal drops exactly the
chosen blocks' parameters and leaves a network that trains and exports, and removing the least influential
mnist-resnet block costs less accuracy than removing the most influential one."""

from __future__ import annotations

import copy
import math

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import PruneLabError
from core.evaluate import evaluate, task_loss
from core.export import export_onnx
from core.importance.blocks import block_scores
from core.metrics import count_params
from core.models import load
from core.prune.layers import PassThrough, choose_blocks, rank_blocks, remove_blocks
from core.structure import removable_blocks, residual_blocks
from tests.conftest import get_spec

# Read off sample_models/architectures.py: a BasicBlock's shortcut is Identity when stride 1 and cin == cout
# (layer1.0 is 16 -> 16 at stride 1); an InvertedResidual is residual when stride 1 and cin == cout (after the
# 3-layer stem: 16 -> 16, then the second block of each later stage); every transformer block is.
EXPECTED = {
    "mnist-resnet": ["layer1.0", "layer1.1", "layer2.1", "layer3.1"],
    "mnist-mobilenet": ["features.3", "features.5", "features.7", "features.9"],
    "digits-mlp": [],
    "mnist-vit": ["blocks.0", "blocks.1", "blocks.2", "blocks.3"],
    "tiny-lm": ["blocks.0", "blocks.1", "blocks.2", "blocks.3"],
}
# ResNet-18: layer1.0 (64 -> 64, stride 1 after the max-pool) plus the second block of each of the 4 stages;
# ResNet-50: all but the first bottleneck of each stage (3+4+6+3 - 4); MobileNetV2: the 17 inverted residuals
# minus the 7 that start a stage; ViT-S/16: its 12 blocks.
ZOO_COUNTS = {"resnet18": 5, "resnet50": 12, "mobilenetv2": 10, "vit-s16": 12}
WITH_BLOCKS = [name for name, blocks in EXPECTED.items() if blocks]
SCORE_IMAGES = 256
_ONNX_NODES: dict[str, int] = {}


def _scores(spec, model: nn.Module | None = None) -> dict[str, float]:
    model = spec.model if model is None else model
    return block_scores(model, removable_blocks(model, spec.example_input), spec.split.train_x[:SCORE_IMAGES])


def _onnx_nodes(model: nn.Module, example_input: torch.Tensor) -> int:
    data, _ = export_onnx(model, example_input)  # raises PruneLabError if onnxruntime disagrees with torch
    return len(onnx.load_from_string(data).graph.node)


def _baseline_nodes(spec) -> int:
    if spec.name not in _ONNX_NODES:
        _ONNX_NODES[spec.name] = _onnx_nodes(spec.model, spec.example_input)
    return _ONNX_NODES[spec.name]


class AddBlock(nn.Module):
    """x + fc(x): a residual block by its Identity shortcut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.fc(x)


class ConcatBlock(AddBlock):
    """Has an Identity shortcut but doubles the width: never removable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.shortcut(x), self.fc(x)], dim=1)


class Flagged(nn.Module):
    """MobileNetV2-style flag: residual only when use_residual is True."""

    def __init__(self, width: int, use_residual: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.use_residual = use_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(x) if self.use_residual else self.fc(x)


class Outer(AddBlock):
    """A residual block holding a residual block: only the inner one is listed."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.fc = nn.Sequential(AddBlock(width), nn.ReLU())


def test_removable_blocks_of_the_sample_models(spec):
    model = copy.deepcopy(spec.model)
    assert removable_blocks(model, spec.example_input) == EXPECTED[spec.name]
    assert residual_blocks(model) == EXPECTED[spec.name]
    for name in EXPECTED[spec.name]:  # the rule's reasons, read off the modules themselves
        block = model.get_submodule(name)
        assert getattr(block, "use_residual", True) is True
        assert isinstance(getattr(block, "shortcut", nn.Identity()), nn.Identity)


@pytest.mark.parametrize("name", list(ZOO_COUNTS))
def test_removable_blocks_of_the_zoo(name):
    spec = load(name)
    blocks = removable_blocks(spec.model, spec.example_input)
    assert len(blocks) == ZOO_COUNTS[name]
    if name.startswith("resnet"):  # never a downsampling block: the first block of stages 2-4 projects
        assert not {"layer2.0", "layer3.0", "layer4.0"} & set(blocks)


def test_the_rule_on_hand_built_blocks():
    model = nn.Sequential(
        nn.Linear(3, 4),
        AddBlock(4),  # 1: residual
        ConcatBlock(4),  # 2: Identity shortcut, but 4 -> 8 wide
        Flagged(8, use_residual=False),  # 3
        Flagged(8, use_residual=True),  # 4
        Outer(8),  # 5: only 5.fc.0 is listed
        nn.Linear(8, 2),
    )
    assert residual_blocks(model) == ["1", "2", "4", "5.fc.0"]
    assert removable_blocks(model, torch.randn(2, 3)) == ["1", "4", "5.fc.0"]


def test_block_scores_on_hand_built_blocks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), AddBlock(8), AddBlock(8), AddBlock(8), nn.Linear(8, 2))
    with torch.no_grad():
        model[1].fc.weight.zero_()  # f(x) = 0: out = x
        model[1].fc.bias.zero_()
        model[2].fc.weight.copy_(-2 * torch.eye(8))  # f(x) = -2x: out = -x
        model[2].fc.bias.zero_()
        model[3].fc.weight.mul_(20)  # a large f(x)
    model.train()
    scores = block_scores(model, ["1", "2", "3"], torch.randn(100, 3), batch_size=16)
    assert list(scores) == ["1", "2", "3"]
    assert scores["1"] == pytest.approx(0.0, abs=1e-9)
    assert scores["2"] == pytest.approx(2.0, abs=1e-9)
    assert 0.1 < scores["3"] < 2.0
    assert model.training  # mode restored
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_block_scores_match_a_hand_computed_block_of_mnist_resnet():
    spec = get_spec("mnist-resnet")
    model, x = spec.model, spec.split.train_x[:SCORE_IMAGES]
    scores = _scores(spec)
    assert list(scores) == EXPECTED["mnist-resnet"]
    assert all(0.0 <= s <= 2.0 for s in scores.values())
    with torch.no_grad():
        inp = model.layer2[0](model.layer1(model.stem(x)))
        out = model.layer2[1](inp)
    by_hand = 1 - F.cosine_similarity(inp.flatten(1), out.flatten(1), dim=1).mean().item()
    assert scores["layer2.1"] == pytest.approx(by_hand, abs=1e-5)
    print(f"mnist-resnet block scores: {scores}")
    print(f"mnist-vit block scores: {_scores(get_spec('mnist-vit'))}")


@pytest.mark.parametrize("name", WITH_BLOCKS)
def test_removing_the_lowest_scoring_half(name):
    spec = get_spec(name)
    model = copy.deepcopy(spec.model)
    scores = _scores(spec, model)
    chosen = choose_blocks(scores, 0.5)
    kept = [b for b in scores if b not in chosen]
    assert len(chosen) == 2 and max(scores[b] for b in chosen) <= min(scores[b] for b in kept)
    params = count_params(model)
    chosen_params = sum(count_params(model.get_submodule(b)) for b in chosen)
    assert chosen_params > 0

    assert remove_blocks(model, chosen, spec.example_input) == 2
    assert all(type(model.get_submodule(b)) is PassThrough for b in chosen)  # an identity taking extra args
    assert removable_blocks(model, spec.example_input) == kept  # the others are untouched
    assert count_params(model) == params - chosen_params
    x = spec.split.test_x[:16]
    with torch.no_grad():
        assert model(x).shape == spec.model(x).shape

    _three_sgd_steps(model, spec.split.train_x[:96], spec.split.train_y[:96])
    assert _onnx_nodes(model, spec.example_input) < _baseline_nodes(spec)


def _three_sgd_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Three SGD steps on 32-image batches: losses finite, weights moved."""
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for xb, yb in zip(x.split(32), y.split(32), strict=True):
        loss = task_loss(model(xb), yb)  # a language model: next-token cross-entropy
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(loss.item())
    model.eval()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_removing_the_least_influential_resnet_block_costs_least():
    spec = get_spec("mnist-resnet")
    ranked = rank_blocks(_scores(spec))
    accuracy = lambda m: evaluate(m, spec.split.test_x, spec.split.test_y)["accuracy"]  # noqa: E731
    base = accuracy(spec.model)
    after = {}
    for block in (ranked[0], ranked[-1]):
        model = copy.deepcopy(spec.model)
        remove_blocks(model, [block], spec.example_input)
        after[block] = accuracy(model)
    print(f"mnist-resnet accuracy: base {base:.3f}, without {ranked[0]} {after[ranked[0]]:.3f}, "
          f"without {ranked[-1]} {after[ranked[-1]]:.3f}")
    assert after[ranked[0]] >= base - 0.10
    assert after[ranked[-1]] <= after[ranked[0]]


def test_errors_name_the_culprits():
    spec = get_spec("mnist-resnet")
    model = copy.deepcopy(spec.model)
    with pytest.raises(PruneLabError, match="'nope'"):
        remove_blocks(model, ["layer1.1", "nope"])
    for example_input in (None, spec.example_input):
        with pytest.raises(PruneLabError, match=r"'layer2\.0'.*removable: layer1\.0, layer1\.1"):
            remove_blocks(model, ["layer1.1", "layer2.0"], example_input)  # downsampling block
        with pytest.raises(PruneLabError, match="'fc'"):
            remove_blocks(model, ["fc"], example_input)  # a leaf layer
        with pytest.raises(PruneLabError, match="''"):
            remove_blocks(model, [""], example_input)  # the model itself
    assert type(model.layer1[1]).__name__ == "BasicBlock"  # nothing was removed by the refused calls
    with pytest.raises(PruneLabError, match="'nope'"):
        block_scores(model, ["layer1.1", "nope"], spec.split.train_x[:4])
    with pytest.raises(PruneLabError, match=r"'layer2\.0' changes"):
        block_scores(model, ["layer2.0"], spec.split.train_x[:4])
    for ratio in (1.0, -0.1, float("nan"), "half"):
        with pytest.raises(PruneLabError, match="ratio"):
            choose_blocks({"a": 0.1}, ratio)


def test_rank_and_choose():
    scores = {"b": 0.2, "a": 0.1, "c": 0.2, "d": 0.0}
    assert rank_blocks(scores) == ["d", "a", "b", "c"]  # the tie b, c keeps the order given
    assert choose_blocks(scores, 0.0) == []
    assert choose_blocks(scores, 0.5) == ["d", "a"]
    assert choose_blocks(scores, 0.6) == ["d", "a"]  # round(2.4)
    assert choose_blocks(scores, 0.9) == ["d", "a", "b", "c"]  # round(3.6)
    assert choose_blocks({}, 0.5) == []
    assert remove_blocks(copy.deepcopy(get_spec("mnist-vit").model), ["blocks.1", "blocks.1"]) == 1


class TorchvisionStyle(nn.Module):
    """torchvision's InvertedResidual names its flag use_res_connect; timm's blocks name it has_skip."""

    def __init__(self, width: int, flag: str, on: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.flag = flag
        setattr(self, flag, on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(x) if getattr(self, self.flag) else self.fc(x)


@pytest.mark.parametrize("flag", ["use_res_connect", "has_skip"])
def test_residual_flags_of_other_libraries_are_read(flag):
    """An EfficientNet-style block flagged use_res_connect was not found by the layer method (issue 13)."""
    model = nn.Sequential(nn.Linear(3, 8), TorchvisionStyle(8, flag, True), TorchvisionStyle(8, flag, False),
                          nn.Linear(8, 2))
    assert residual_blocks(model) == ["1"]
    assert removable_blocks(model, torch.randn(2, 3)) == ["1"]

"""core.export memoises exports in-process, keyed by the deployable model's content: the same model exports once;
anything that changes what the exporter or the onnxruntime check sees (a weight, a plain attribute forward reads,
the class, a hook, the example's trailing shape or token ids) exports anew; the cache is bounded, least recently
used first out."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import core.export
from core.errors import PruneLabError
from core.export import export_onnx
from core.prune.unstructured import make_permanent


@pytest.fixture
def exports(monkeypatch) -> list[int]:
    """One entry per torch.onnx.export call, with an empty cache for the test."""
    calls: list[int] = []
    real = torch.onnx.export

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", counted)
    monkeypatch.setattr(core.export, "_MEMO", OrderedDict(), raising=False)
    return calls


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


class Heads(nn.Module):
    """Splits features into num_heads groups (a plain int forward reads, as attention modules keep it)."""

    def __init__(self, num_heads: int, act: Callable = F.relu) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_heads = num_heads
        self.act = act
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.proj(x)).reshape(x.shape[0], self.num_heads, -1)
        return h.softmax(-1).reshape(x.shape[0], -1)


def _block_class(act: Callable) -> type[nn.Module]:
    """A class named Block applying act after a Linear: two calls give two classes with the same name and
    the same parameter names and shapes."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return act(self.lin(x))

    return Block


class Tokens(nn.Module):
    """Token ids -> one vector per row (embedding, mean over the sequence)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(20, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(1))


class Sequence(nn.Module):
    """(batch, length, 4) -> (batch, 2): the length is fixed by the example at export."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).flatten(1)


def test_the_same_model_exports_once(exports, tmp_path) -> None:
    """A second export of an identical model (a deep copy) returns the first one's bytes and deviation, and
    still writes its file."""
    model, x = _mlp(), torch.randn(1, 4)
    first = export_onnx(model, x, tmp_path / "a.onnx")
    second = export_onnx(copy.deepcopy(model), x, tmp_path / "b.onnx")
    assert len(exports) == 1
    assert second == first
    assert (tmp_path / "b.onnx").read_bytes() == first[0]


def test_a_changed_weight_exports_anew(exports) -> None:
    model, x = _mlp(), torch.randn(1, 4)
    first, _ = export_onnx(model, x)
    with torch.no_grad():
        model[2].bias[0] += 1.0
    second, _ = export_onnx(model, x)
    assert len(exports) == 2 and second != first


@pytest.mark.parametrize("other", [Heads(4), Heads(2, torch.tanh)], ids=["num_heads", "function"])
def test_a_changed_plain_attribute_exports_anew(exports, other: nn.Module) -> None:
    """Same parameters, another num_heads (an int) or activation (a function): forward computes otherwise."""
    x = torch.randn(1, 8)
    export_onnx(Heads(2), x)
    _, worst = export_onnx(other, x)  # a hit skips the check: only the count tells a wrong one
    assert len(exports) == 2 and worst <= core.export.TOLERANCE


def test_another_class_with_the_same_parameters_exports_anew(exports) -> None:
    relu, tanh = _block_class(torch.relu)(), _block_class(torch.tanh)()
    assert type(relu).__qualname__ == type(tanh).__qualname__
    assert [(n, p.shape) for n, p in relu.named_parameters()] == [(n, p.shape) for n, p in tanh.named_parameters()]
    x = torch.randn(1, 4)
    export_onnx(relu, x)
    export_onnx(tanh, x)
    assert len(exports) == 2


def test_a_forward_hook_exports_anew(exports) -> None:
    """A hook changes what forward returns without changing any parameter or attribute."""
    model, x = _mlp(), torch.randn(1, 4)
    export_onnx(model, x)
    model[2].register_forward_hook(lambda module, args, out: out * 2)
    _, worst = export_onnx(model, x)
    assert len(exports) == 2 and worst <= core.export.TOLERANCE


def test_tied_and_untied_weights_do_not_share(exports) -> None:
    """Two Linear layers sharing one weight, and the same with an equal but separate copy: the files differ
    (one initializer or two), so the entries must."""
    torch.manual_seed(0)
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)).eval()
    tied[1].weight = tied[0].weight
    untied = copy.deepcopy(tied)
    untied[1].weight = nn.Parameter(tied[0].weight.detach().clone())
    x = torch.randn(1, 4)
    export_onnx(tied, x)
    export_onnx(untied, x)
    assert len(exports) == 2


def test_a_different_example_shape_exports_anew(exports) -> None:
    model = Sequence()
    export_onnx(model, torch.randn(1, 3, 4))
    export_onnx(model, torch.randn(1, 5, 4))
    assert len(exports) == 2


def test_float_examples_of_the_same_shape_share(exports) -> None:
    """The exporter traces the example's first row (traced_batch) and the check draws its own inputs from
    its trailing shape and dtype: float values and the number of rows do not change the file."""
    model = _mlp()
    export_onnx(model, torch.randn(1, 4))
    export_onnx(model, torch.randn(3, 4))
    assert len(exports) == 1


def test_token_ids_are_part_of_the_key(exports) -> None:
    """Integer examples: the traced row's ids and the largest id (the check's random ids stay at or below
    it) are keyed; the same ids share."""
    model = Tokens()
    export_onnx(model, torch.tensor([[1, 2, 3]]))
    export_onnx(model, torch.tensor([[1, 2, 3]]))
    assert len(exports) == 1
    export_onnx(model, torch.tensor([[3, 2, 1]]))
    export_onnx(model, torch.tensor([[1, 2, 3], [1, 2, 19]]))
    assert len(exports) == 3


def test_a_pruned_model_and_its_permanent_copy_share(exports) -> None:
    """Masks are folded into a copy before keying, so the masked model and the one with masks made permanent
    are the same deployable model."""
    model, x = _mlp(), torch.randn(1, 4)
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    masked, _ = export_onnx(model, x)
    permanent, _ = export_onnx(make_permanent(copy.deepcopy(model)), x)
    assert len(exports) == 1 and permanent == masked
    export_onnx(_mlp(), x)  # the unpruned model is another one
    assert len(exports) == 2


def test_failed_exports_are_not_cached(exports, monkeypatch) -> None:
    model, x = _mlp(), torch.randn(1, 4)
    counted = torch.onnx.export

    def fails_once(*args, **kwargs):
        if len(exports) == 0:
            exports.append(1)
            raise RuntimeError("boom")
        return counted(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", fails_once)
    with pytest.raises(PruneLabError, match="boom"):
        export_onnx(model, x)
    export_onnx(model, x)
    export_onnx(model, x)
    assert len(exports) == 2


def test_the_bound_evicts_the_least_recently_used(exports, monkeypatch) -> None:
    """Room for two files of this size: A, B, A (hit), C evicts B, not A; B then exports again."""
    x = torch.randn(1, 4)
    a, b, c = _mlp(0), _mlp(1), _mlp(2)
    size = len(export_onnx(a, x)[0])
    monkeypatch.setattr(core.export, "CACHE_BYTES", int(2.5 * size), raising=False)
    export_onnx(b, x)
    export_onnx(a, x)
    assert len(exports) == 2
    export_onnx(c, x)
    export_onnx(a, x)
    assert len(exports) == 3
    export_onnx(b, x)
    assert len(exports) == 4
    assert sum(len(data) for data, _ in core.export._MEMO.values()) <= core.export.CACHE_BYTES

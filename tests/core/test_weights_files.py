"""A weights file that is not a pickle at all (random bytes, a text file renamed .pt) is called corrupt, never met
with "it holds pickled objects: trust it" — trusting it would not help, and the advice would be wrong. A real pickle
of a module is still told apart and named as such."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import PruneLabError
from core.weights import torch_load


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, b"hello, this is not a pickle\n",
                                     b"\x80\x04\x95" + b"\xff" * 64])
def test_bytes_that_are_no_pickle_are_corrupt_not_untrusted(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(PruneLabError) as e:
        torch_load(path, trust_pickle=False)
    assert "corrupt" in str(e.value) and "trust" not in str(e.value).lower()


def test_a_pickled_module_still_asks_for_trust(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(PruneLabError, match="holds pickled objects.*--trust-pickle"):
        torch_load(path, trust_pickle=False)
    assert isinstance(torch_load(path, trust_pickle=True), nn.Linear)

"""core.structure is the one definition of an attention module: channel grouping (core.graph) and head
pruning agree on which modules have heads. Before it, core.graph counted any module with `num_heads` and
q/k/v Linears as attention (splitting its channel groups per head) while head pruning also required the
output projection `proj` — so a look-alike got per-head channel groups but no head sliders."""

from __future__ import annotations

import torch
from torch import nn

from core.graph import channel_units, head_units
from sample_models.architectures import Attention


class LookAlike(nn.Module):
    """num_heads and q, k, v Linears but no `proj` (its output layer is called `out`): not an attention
    module whose heads PruneLab can find, so nothing may treat it as one."""

    def __init__(self, dim: int = 8, num_heads: int = 2) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.q(x) + self.k(x) + self.v(x))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), LookAlike(), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_a_look_alike_is_attention_for_neither_grouping_nor_heads():
    m, x = model(), torch.zeros(1, 4)
    assert head_units(m) == []  # no head sliders...
    grouped = {u.name: u.heads for u in channel_units(m, x)}
    assert "1.q" in grouped and set(grouped.values()) == {1}  # ...so no channel group is split per head either


def test_a_real_attention_module_is_attention_for_both():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn, self.head = Attention(8, 2), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.attn(x).mean(1))

    m, x = Net().eval(), torch.zeros(1, 5, 8)
    assert [(u.name, u.size) for u in head_units(m)] == [("attn", 2)]
    split = {u.name: u.heads for u in channel_units(m, x) if u.name in ("attn.q", "attn.k", "attn.v")}
    assert split and set(split.values()) == {2}  # q/k/v groups narrow every head alike

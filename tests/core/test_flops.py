"""FLOPs where torch's FlopCounterMode alone undercounts: nn.MultiheadAttention (its inference fast path
hides everything; with need_weights=False it uses scaled_dot_product_attention, whose CPU kernel has no
formula) and direct scaled_dot_product_attention calls. Checked against the textbook count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.metrics import flops_by_module, total_flops
from tests.core.test_one_flop_count import MHA

B, L, E, H = 1, 17, 64, 4
PROJECTIONS = 2 * B * L * E * E * 4  # q, k, v and output projections: 2 FLOPs per multiply-add
ATTENTION = 2 * (2 * B * H * L * L * (E // H))  # scores q·kᵀ and the weighted sum of v


class SDPA(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(B, L, H, E // H).transpose(1, 2)
        return F.scaled_dot_product_attention(q, q, q)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_counts_projections_and_attention(need_weights):
    model, x = MHA(E, H, need_weights).eval(), torch.randn(B, L, E)
    assert FlopCounterCheck.raw_no_grad(model, x) < PROJECTIONS + ATTENTION  # the blind spot is real
    with torch.no_grad():  # callers often measure under no_grad; the count must not depend on it
        assert total_flops(model, x) == PROJECTIONS + ATTENTION
    assert flops_by_module(model, x) == {"attn": PROJECTIONS + ATTENTION}


def test_scaled_dot_product_attention_is_counted():
    assert total_flops(SDPA().eval(), torch.randn(B, L, E)) == ATTENTION


class FlopCounterCheck:
    @staticmethod
    def raw_no_grad(model: nn.Module, x: torch.Tensor) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

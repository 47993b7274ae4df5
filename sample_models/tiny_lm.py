"""tiny-lm: a small GPT-style causal language model (character-level, trained on Python's reference docs).

Pre-LayerNorm decoder blocks (causal self-attention, then a GELU MLP, each added to its input), learned token
and position embeddings, a final LayerNorm and an output layer over the vocabulary. Written with PruneLab's
conventions so every method works on it unchanged:

- attention is a module with an int `num_heads` and Linear children `q`, `k`, `v`, `proj`; the head width is
  read from the projections at run time (reshape(..., num_heads, -1)), so removing heads (rows of q/k/v,
  columns of proj, num_heads lowered) leaves the remaining heads computing what they did;
- blocks have `attn` and `fc1` children (core.structure recognises them as residual; the layer method removes
  them), and the MLP is `fc1`/`fc2` (the neuron method);
- it takes ONE tensor, token ids (N, T) int64, and returns next-token logits (N, T, V); the causal mask is made
  from T with tensor code, no data-dependent Python branch, so Torch-Pruning traces it and torch.onnx exports
  it with a dynamic batch dimension.

No dropout: PruneLab's fine-tuning is brief and eval-mode outputs would be the same.
"""

from __future__ import annotations

import torch
from torch import nn

from sample_models import tiny_lm_data
from sample_models.architectures import Attention, Block

DIM = 128  # width of the residual stream
DEPTH = 4  # decoder blocks
HEADS = 4  # attention heads per block (width 32 each)
MLP_HIDDEN = 4 * DIM


class CausalAttention(Attention):
    """Multi-head self-attention where position i sees positions 0..i only."""

    def masked(self, scores: torch.Tensor) -> torch.Tensor:
        n = scores.shape[-1]
        future = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)  # True above the diagonal
        # the most negative finite float rather than -inf: the ONNX graph holds no infinities
        return scores.masked_fill(future, torch.finfo(scores.dtype).min)


class TinyLM(nn.Module):
    """Token ids (N, T), T <= context, in; next-token logits (N, T, vocab) out."""

    def __init__(self, vocab: int | None = None, dim: int = DIM, depth: int = DEPTH, num_heads: int = HEADS,
                 mlp_hidden: int = MLP_HIDDEN, context: int = tiny_lm_data.CONTEXT) -> None:
        super().__init__()
        vocab = vocab or tiny_lm_data.vocab_size()
        self.tok_embed = nn.Embedding(vocab, dim)
        self.pos_embed = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_hidden, CausalAttention) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.apply(_init)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # the position table is called as a module (not sliced), so Torch-Pruning sees it and cuts its width too
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok_embed(ids) + self.pos_embed(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def _init(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases (PyTorch's defaults train slower here)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)

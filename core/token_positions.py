"""Which positions of a batch of token ids are real tokens, and a layer's calibration inputs at those positions only.

Calibration statistics (core.repair_layers' H, core.repair_structured's sums and means, core.importance's
activation norms and block influence) are sums over a layer's input rows. For padded text most rows would be
padding, which the model itself never looks at (its attention masks it out and its pooling skips it), so those
statistics would describe positions no output depends on. A model says which token id pads by a `pad_token_id`
attribute (sample_models.minilm.MiniLM; core.loaders.user_spec.LogitsOnly for a Hugging Face text model); a model
without one (tiny-lm: every position of its text is real) keeps every row.
"""

from __future__ import annotations

import torch
from torch import nn


def real_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """(batch, positions) bool, True where x holds a real token; None when x is not a batch of token ids or the
    model declares no padding id (then every position counts)."""
    pad = getattr(model, "pad_token_id", None)
    if x.is_floating_point() or x.dim() != 2 or not isinstance(pad, int) or isinstance(pad, bool):
        return None
    return x != pad


def real_rows(x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """A layer's input (..., features) as rows (positions, features), only the real tokens' when `real` (batch,
    positions) describes its leading two dimensions (a layer after pooling, whose input is (batch, features),
    keeps all its rows)."""
    if real is not None and x.dim() >= 3 and x.shape[:2] == real.shape:
        x = x[real]
    return x.reshape(-1, x.shape[-1])


def real_only(x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """x with the padding positions set to zero, same shape (for per-example statistics such as a cosine over
    all of an example's positions); x itself when `real` does not describe its leading two dimensions."""
    if real is None or x.dim() < 3 or x.shape[:2] != real.shape:
        return x
    return x * real.reshape(*real.shape, *(1,) * (x.dim() - 2)).to(x.dtype)

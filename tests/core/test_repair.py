"""core.repair against references computed the slow, obvious way: SparseGPT's blocked, lazily updated Cholesky
recurrence against optimal-brain-surgeon steps with explicit inverses; the masked least squares against the
closed-form solution per row; and both against doing nothing."""

from __future__ import annotations

import pytest
import torch

from core.repair import (
    _upper_inverse_factor,
    dampened,
    masked_lstsq,
    masked_lstsq_,
    output_change,
    sparsegpt,
    sparsegpt_,
)


def _layer(rows: int = 12, cols: int = 40, samples: int = 200, seed: int = 0):
    """A weight and the H = X X^T of correlated inputs (a few shared factors, as real activations have), one input
    always zero (a dead ReLU)."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(6, samples, generator=g, dtype=torch.float64)
    x = torch.randn(cols, 6, generator=g, dtype=torch.float64) @ factors + 0.3 * torch.randn(
        cols, samples, generator=g, dtype=torch.float64)
    x[5] = 0.0
    return torch.randn(rows, cols, generator=g, dtype=torch.float64), x @ x.T


def _obs_reference(weight: torch.Tensor, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Column by column: a pruned weight is removed and its error spread over the columns to its right by the
    optimal brain surgeon's step, with the inverse of the dampened H restricted to those columns taken afresh."""
    w, hd = weight.clone(), dampened(h)
    w[:, torch.diagonal(h) == 0] = 0.0
    for i in range(w.shape[1]):
        inverse = torch.linalg.inv(hd[i:, i:])
        for r in torch.nonzero(~keep[:, i]).flatten():
            w[r, i:] -= w[r, i] / inverse[0, 0] * inverse[0]
    return w * keep


def _lstsq_reference(weight: torch.Tensor, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per row, the closed form: W' = W - W[M] (Hd^-1[M, M])^-1 Hd^-1[M, :] for its pruned inputs M."""
    inverse = torch.linalg.inv(dampened(h))
    out = weight.clone()
    for r in range(weight.shape[0]):
        m = ~keep[r]
        out[r] = weight[r] - weight[r, m] @ torch.linalg.solve(inverse[m][:, m], inverse[m])
    return out * keep


@pytest.mark.parametrize("block", [7, 16, 128])
def test_sparsegpt_equals_the_explicit_brain_surgeon_steps(block):
    weight, h = _layer()
    repaired, keep = sparsegpt(weight, h, ratio=0.5, block=block)
    assert torch.allclose(repaired, _obs_reference(weight, h, keep), atol=1e-4, rtol=1e-4)
    assert not keep[:, 5].any() or (repaired[:, 5] == 0).all()


def test_sparsegpt_prunes_the_asked_share_and_n_of_every_m():
    weight, h = _layer()
    _, keep = sparsegpt(weight, h, ratio=0.5, block=8)
    assert int((~keep).sum()) == weight.numel() // 2
    repaired, keep = sparsegpt(weight, h, nm=(2, 4), block=16)
    assert ((~keep).view(12, 10, 4).sum(-1) == 2).all()
    assert torch.allclose(repaired, _obs_reference(weight, h, keep), atol=1e-4, rtol=1e-4)


def test_masked_lstsq_equals_the_closed_form():
    weight, h = _layer()
    keep = weight.abs() > weight.abs().median()  # a magnitude mask: any criterion's mask is repaired alike
    exact = _lstsq_reference(weight, h, keep)
    assert torch.allclose(masked_lstsq(weight, h, keep), exact, atol=1e-4, rtol=1e-4)
    _, sparse_keep = sparsegpt(weight, h, ratio=0.5)
    assert torch.allclose(masked_lstsq(weight, h, sparse_keep), _lstsq_reference(weight, h, sparse_keep), atol=1e-4,
                          rtol=1e-4)


def test_repair_ranks_least_squares_then_sparsegpt_then_nothing():
    """With the same mask: the least-squares weights change the outputs least (they are the minimum), SparseGPT's
    less than leaving the kept weights alone — by a wide margin on correlated inputs."""
    weight, h = _layer(seed=1)
    sparse, keep = sparsegpt(weight, h, ratio=0.5)
    changes = [output_change(weight, w, h) for w in (masked_lstsq(weight, h, keep), sparse, weight * keep)]
    assert changes[0] <= changes[1] * (1 + 1e-9) and changes[1] < 0.5 * changes[2]


def test_float32_weights_come_back_float32_and_close():
    weight, h = _layer()
    repaired, keep = sparsegpt(weight.float(), h.float(), ratio=0.5)
    assert repaired.dtype == torch.float32
    reference, _ = sparsegpt(weight, h, ratio=0.5)
    assert torch.allclose(repaired.double(), reference, atol=1e-3)


def test_sparsegpt_repairs_a_given_mask_by_the_same_steps():
    weight, h = _layer(seed=2)
    keep = weight.abs() > weight.abs().median()
    repaired, kept = sparsegpt(weight, h, keep=keep, block=16)
    assert torch.equal(kept, keep)
    assert torch.allclose(repaired, _obs_reference(weight, h, keep), atol=1e-4, rtol=1e-4)


def test_a_consumed_hessian_gives_the_same_repair_in_its_own_storage():
    """consume=True factors H where it lies (one n x n matrix held instead of three): the same weights and mask
    as a repair that copies it, and the caller's H is left untouched only when not consumed."""
    torch.manual_seed(0)
    x = torch.randn(200, 48, dtype=torch.float64)
    h, weight = x.T @ x, torch.randn(16, 48)
    kept = h.clone()
    copied = sparsegpt(weight, h, ratio=0.5)
    assert torch.equal(h, kept)
    consumed = sparsegpt(weight, h, ratio=0.5, consume=True)
    assert torch.equal(copied[0], consumed[0]) and torch.equal(copied[1], consumed[1])
    assert not torch.equal(h, kept)  # h's storage now holds U
    keep = copied[1]
    h = kept.clone()
    assert torch.equal(masked_lstsq(weight, kept, keep), masked_lstsq(weight, h, keep, consume=True))


@pytest.mark.parametrize("n", [7, 300])  # one panel; several panels of the blocked inversion, and an odd middle row
def test_the_factor_is_the_upper_cholesky_factor_of_the_inverse(n):
    """U (upper, U^T U = H^-1) formed in H's own storage by reversal, Cholesky and a blocked triangular inversion:
    the one factor torch computes the slow way, from an explicit inverse."""
    torch.manual_seed(n)
    x = torch.randn(2 * n, n, dtype=torch.float64)
    h = dampened(x.T @ x)
    expected = torch.linalg.cholesky(torch.linalg.inv(h), upper=True)
    storage = h.clone()
    u = _upper_inverse_factor(storage)
    assert u.data_ptr() == storage.data_ptr()  # in place
    assert torch.allclose(u, expected, rtol=1e-9, atol=1e-9 * expected.abs().max())
    assert torch.equal(u, u.triu())


def test_sparsegpt_in_place_repairs_the_callers_weight_in_its_own_dtype():
    """sparsegpt_ works on the caller's weight itself (no copy of it): a float64 weight ends as sparsegpt's copy
    does, exactly; a float32 one stays float32 (block math in float64, later columns updated in float32) and
    close to the float64 answer."""
    weight, h = _layer(cols=300)  # several blocks: the float32 lazy updates are used
    expected, expected_keep = sparsegpt(weight, h, ratio=0.5, block=64)
    w = weight.clone()
    keep = sparsegpt_(w, h, ratio=0.5, block=64)
    assert torch.equal(w, expected) and torch.equal(keep, expected_keep)
    w32 = weight.float()
    pointer = w32.data_ptr()
    keep32 = sparsegpt_(w32, h, ratio=0.5, block=64)
    assert w32.dtype == torch.float32 and w32.data_ptr() == pointer
    assert (keep32 == expected_keep).float().mean() > 0.99  # a near tie may fall the other way in float32
    same = keep32 == expected_keep
    assert torch.allclose(w32.double()[same], expected[same], atol=1e-4)


def test_masked_lstsq_in_row_chunks_is_the_closed_form_and_in_place():
    """Rows are independent systems: solved a few rows at a time (bounded memory), the same closed-form answer,
    written into the caller's weight by masked_lstsq_."""
    weight, h = _layer(rows=23, seed=3)
    keep = weight.abs() > weight.abs().median()
    exact = _lstsq_reference(weight, h, keep)
    whole = masked_lstsq(weight, h, keep, rows=23)
    chunked = masked_lstsq(weight, h, keep, rows=5)
    assert torch.allclose(chunked, exact, atol=1e-4, rtol=1e-4)
    assert torch.allclose(chunked, whole, atol=1e-4, rtol=1e-4)  # each chunk stops once its own rows converge
    changes = [output_change(weight, w, h) for w in (exact, whole, chunked)]
    assert max(changes) <= min(changes) * (1 + 1e-7)
    w = weight.float()
    masked_lstsq_(w, h, keep, rows=5)
    assert w.dtype == torch.float32 and torch.allclose(w.double(), exact, atol=1e-4, rtol=1e-4)

"""Post-training repair of a layer from calibration activations: the weights that stay are changed so the layer's
output on the calibration inputs moves as little as possible, without any training.

For a linear layer y = W x the change of its outputs over calibration inputs X (columns) is
||(W - W') X||^2 = tr((W - W') H (W - W')^T) with H = X X^T (inputs x inputs). Both repairs below minimise it with
H dampened by `damp` times the mean of its diagonal (H + lambda I: a weight whose input never varies is not sent
to infinity), under a keep-mask (1 = the weight stays):

- `sparsegpt`: SparseGPT's approximate optimal brain surgeon (Frantar & Alistarh, 2023). Columns are visited left
  to right; a pruned weight's error is spread over the columns to its right only, through the upper Cholesky
  factor U of H^-1 (U^T U = H^-1), so one factor serves every row although each row has its own mask. Columns are
  taken in blocks of `block`: inside a block the updates are exact per column, to the columns after the block they
  are applied once (bounded memory: the block and U). The mask itself is chosen as it goes, by the saliency
  w^2 / U_ii^2 of the weights as updated so far: per block for a ratio, per m columns for an N:M pattern.
- `masked_lstsq`: the exact least-squares weights for a given mask (from any criterion): every row r solves
  W'_r[F] (H + lambda I)[F, F] = W_r (H + lambda I)[:, F] on its kept inputs F. SparseGPT's answer is not this one:
  its earlier columns never compensate for later ones. Solved for all rows at once by conjugate gradients
  preconditioned with the diagonal (one rows x n by n x n product per step), started from `start`.

Convolutions are the same problem on their unfolded inputs (core.repair_layers builds H for them).
"""

from __future__ import annotations

import torch

DAMP = 0.01  # dampening, a fraction of H's mean diagonal (SparseGPT's and Wanda's reference choice)
BLOCK = 128  # columns updated lazily together (SparseGPT's default: memory of a block, speed of a matmul)
# conjugate gradients stop when every row's residual is this fraction of its right-hand side. Looser stops sooner
# with nearly the same output change (MiniLM's largest layer: 1e-5 in 0.7x the time, change within 2e-7 relative)
# but leaves weights in H's flat directions off by 3e-4: the exact answer is what this repair promises
CG_TOL = 1e-7
CG_MAX_STEPS = 1000


def dampened(h: torch.Tensor, damp: float = DAMP, consume: bool = False) -> torch.Tensor:
    """H + damp * mean(diag H) * I, in float64; an input that is never non-zero gets 1 on its diagonal (its
    weights change nothing, so any positive value keeps the factorisation defined). consume: a float64 h is
    overwritten instead of copied (the caller no longer needs it: one H-sized matrix held, not two)."""
    h = h if consume and h.dtype == torch.float64 else h.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(damp * torch.diagonal(h).mean())
    return h


def _upper_inverse_factor(h: torch.Tensor) -> torch.Tensor:
    """U, upper triangular, with U^T U = h^-1 (h symmetric positive definite), computed in h's own storage (LAPACK's
    potrf and potri work in place): the factor, the inverse and U never coexist with h, so the widest layer's
    repair holds one n x n matrix. Done on h's transpose, the same matrix in LAPACK's column-major order: on h
    itself torch converts through an n x n temporary (measured at n = 3072: 82 MiB more at peak, against 21)."""
    h = h.mT
    torch.linalg.cholesky(h, out=h)
    torch.cholesky_inverse(h, out=h)
    return torch.linalg.cholesky(h, upper=True, out=h)


def sparsegpt(weight: torch.Tensor, h: torch.Tensor, ratio: float = 0.0, nm: tuple[int, int] | None = None,
              damp: float = DAMP, block: int = BLOCK, keep: torch.Tensor | None = None, consume: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(repaired weight, keep-mask) of a (rows x inputs) weight: `ratio` of each block's weights pruned, or n of
    every m consecutive inputs of each row for nm=(n, m), or the given `keep` mask. Computed in float64,
    returned in weight's dtype. consume: h (float64) is overwritten by its factor instead of copied."""
    w = weight.detach().double().clone()
    rows, cols = w.shape
    if nm is not None:  # a block holds whole groups, so groups start where the caller's do
        block = max(nm[1], block - block % nm[1])
    w[:, torch.diagonal(h) == 0] = 0.0  # inputs that are always zero: their weights do nothing (read before h goes)
    u = _upper_inverse_factor(dampened(h, damp, consume))
    given = keep is not None
    keep = keep.clone().bool() if given else torch.ones_like(w, dtype=torch.bool)
    for a in range(0, cols, block):
        b = min(a + block, cols)
        errors = _sparsegpt_block(w, u, keep, a, b, None if given else ratio, nm)
        w[:, b:].addmm_(errors, u[a:b, b:], alpha=-1)  # in place: no rows x rest temporary per block
    return w.mul_(keep).to(weight.dtype), keep


def _sparsegpt_block(w: torch.Tensor, u: torch.Tensor, keep: torch.Tensor, a: int, b: int, ratio: float | None,
                     nm: tuple[int, int] | None) -> torch.Tensor:
    """Prune and repair columns a..b-1 of w in place (keep filled in, unless ratio is None: keep is given); the
    scaled errors, for the later columns."""
    part, ud = w[:, a:b], u[a:b, a:b]
    scale = torch.diagonal(ud)
    errors = torch.zeros_like(part)
    if nm is None and ratio is not None:
        keep[:, a:b] = _keep_lowest(part.pow(2) / scale.pow(2), ratio)
    for i in range(b - a):
        if nm is not None and ratio is not None and i % nm[1] == 0:
            span = slice(i, min(i + nm[1], b - a))
            saliency = part[:, span].pow(2) / scale[span].pow(2)
            keep[:, a + span.start:a + span.stop] = _keep_nm(saliency, nm[0])
        column = part[:, i]
        error = torch.where(keep[:, a + i], 0.0, column) / ud[i, i]
        part[:, i:] -= error.unsqueeze(1) * ud[i, i:].unsqueeze(0)
        errors[:, i] = error
    return errors


def _keep_lowest(saliency: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask dropping the round(ratio * numel) lowest saliencies."""
    k = round(ratio * saliency.numel())
    keep = torch.ones_like(saliency, dtype=torch.bool)
    if k:
        keep.view(-1)[torch.topk(saliency.flatten(), k, largest=False).indices] = False
    return keep


def _keep_nm(saliency: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask dropping the n lowest saliencies of each row (a group of up to m columns)."""
    keep = torch.ones_like(saliency, dtype=torch.bool)
    keep.scatter_(1, torch.topk(saliency, min(n, saliency.shape[1]), dim=1, largest=False).indices, False)
    return keep


def masked_lstsq(weight: torch.Tensor, h: torch.Tensor, keep: torch.Tensor, damp: float = DAMP,
                 start: torch.Tensor | None = None, consume: bool = False) -> torch.Tensor:
    """The weights W' (zero where keep is False) minimising tr((W - W') Hd (W - W')^T), Hd = dampened(h):
    preconditioned conjugate gradients on every row at once, from `start` (default: W masked). consume: h
    (float64) is dampened in place instead of copied."""
    hd, w, free = dampened(h, damp, consume), weight.detach().double(), keep.to(torch.float64)
    rhs = (w @ hd) * free
    x = (start.detach().double() if start is not None else w) * free
    precondition = free / torch.diagonal(hd)
    r = rhs - (x @ hd) * free
    z = r * precondition
    p, rz = z.clone(), (r * z).sum(1, keepdim=True)
    target = CG_TOL * rhs.norm(dim=1, keepdim=True).clamp_min(1e-300)
    for _ in range(CG_MAX_STEPS):
        if bool((r.norm(dim=1, keepdim=True) <= target).all()):
            break
        hp = (p @ hd) * free
        alpha = rz / (p * hp).sum(1, keepdim=True).clamp_min(1e-300)
        x, r = x + alpha * p, r - alpha * hp
        z = r * precondition
        rz_next = (r * z).sum(1, keepdim=True)
        p, rz = z + (rz_next / rz.clamp_min(1e-300)) * p, rz_next
    return (x * free).to(weight.dtype)


def output_change(weight: torch.Tensor, repaired: torch.Tensor, h: torch.Tensor) -> float:
    """tr((W - W') H (W - W')^T): the summed squared change of the layer's outputs over the calibration inputs
    (H undampened: what the layer really does)."""
    d = (weight.detach().double() - repaired.detach().double())
    return float(torch.einsum("ri,ij,rj->", d, h.double(), d))

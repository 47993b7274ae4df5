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
  its earlier columns never compensate for later ones. Solved a few rows at a time by conjugate gradients
  preconditioned with the diagonal (one rows x n by n x n product per step).

Both also come in place (`sparsegpt_`, `masked_lstsq_`), so a layer's repair holds its H (as its factor) and
temporaries of a block of columns or a few rows, not copies of the weight: issue 14's bound of one layer's H plus
its calibration inputs (bench.repair --memory measures it).

Convolutions are the same problem on their unfolded inputs (core.repair_layers builds H for them).
"""

from __future__ import annotations

import torch

DAMP = 0.01  # dampening, a fraction of H's mean diagonal (SparseGPT's and Wanda's reference choice)
BLOCK = 128  # columns updated lazily together (SparseGPT's default: memory of a block, speed of a matmul)
FACTOR_BLOCK = 128  # columns of the blocked triangular inversion of H's factor (temporaries: 128 x 128 float64)
LAZY_COLUMNS = 512  # later columns updated per product after a block (U's slice converted: 128 x 512)
REVERSE_ROWS = 16  # rows turned at a time when H's rows and columns are reversed (temporaries: 2 x 16 x n float64)
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
    """U, upper triangular, with U^T U = h^-1 (h symmetric positive definite), in h's own storage and with only
    temporaries of a few rows or a block: the widest layer's repair holds one n x n matrix. With P the
    reversal of rows and columns and P h P = L L^T: U = P L^-1 P, as (P L^-1 P)^T (P L^-1 P) = P L^-T L^-1 P = h^-1
    (and an upper factor with a positive diagonal is unique). Cholesky runs on h's transpose, the same matrix in
    LAPACK's column-major order (on h itself torch converts through an n x n temporary); cholesky_inverse is not
    used: its workspace measured 23 MiB beyond H at n = 3072."""
    lower = h.mT
    _reverse_(lower)
    torch.linalg.cholesky(lower, out=lower)  # zeroes the upper triangle, which _invert_lower_ relies on
    _invert_lower_(lower)
    _reverse_(lower)
    return lower


def _reverse_(x: torch.Tensor) -> None:
    """x := P x P (rows and columns in reverse order: a half turn) in place, REVERSE_ROWS rows at a time."""
    n = len(x)
    for a in range(0, n // 2, REVERSE_ROWS):
        b = min(a + REVERSE_ROWS, n // 2)
        top = x[a:b].flip(0, 1)  # flip copies: two row panels live
        x[a:b] = x[n - b:n - a].flip(0, 1)
        x[n - b:n - a] = top
    if n % 2:
        x[n // 2] = x[n // 2].flip(0)


def _invert_lower_(x: torch.Tensor) -> None:
    """x := x^-1 in place for x lower triangular with zeros above its diagonal: LAPACK trtri's blocked algorithm,
    bottom-right first. With x = [[A, 0], [B, C]] and C already inverted in place: B := -C^-1 B A^-1, A := A^-1.
    C^-1 B is formed FACTOR_BLOCK rows at a time from the bottom up: as C^-1 is lower triangular, a row of it
    reads the rows of B above it only, so the rows below are free to be overwritten (temporaries: block x block)."""
    n = len(x)
    for a in reversed(range(0, n, FACTOR_BLOCK)):
        b = min(a + FACTOR_BLOCK, n)
        inverse = torch.linalg.solve_triangular(x[a:b, a:b], torch.eye(b - a, dtype=x.dtype), upper=False)
        for c in reversed(range(b, n, FACTOR_BLOCK)):
            d = min(c + FACTOR_BLOCK, n)
            x[c:d, a:b] = (x[c:d, b:d] @ x[b:d, a:b]).neg_() @ inverse
        x[a:b, a:b] = inverse


def sparsegpt(weight: torch.Tensor, h: torch.Tensor, ratio: float = 0.0, nm: tuple[int, int] | None = None,
              damp: float = DAMP, block: int = BLOCK, keep: torch.Tensor | None = None, consume: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(repaired copy of weight, keep-mask) by sparsegpt_ (which see), the caller's weight left alone."""
    w = weight.detach().clone()
    return w, sparsegpt_(w, h, ratio, nm, damp, block, keep, consume)


def sparsegpt_(w: torch.Tensor, h: torch.Tensor, ratio: float = 0.0, nm: tuple[int, int] | None = None,
               damp: float = DAMP, block: int = BLOCK, keep: torch.Tensor | None = None, consume: bool = False
               ) -> torch.Tensor:
    """Prune and repair a (rows x inputs) weight w in place; its keep-mask. `ratio` of each block's weights pruned,
    or n of every m consecutive inputs of each row for nm=(n, m), or the given `keep` mask. Each block's math is
    in float64; the columns after it are updated in w's own dtype (a float32 weight is never copied whole, as
    SparseGPT's reference code keeps float32). consume: h (float64) is overwritten by its factor, not copied."""
    cols = w.shape[1]
    if nm is not None:  # a block holds whole groups, so groups start where the caller's do
        block = max(nm[1], block - block % nm[1])
    w[:, torch.diagonal(h) == 0] = 0.0  # inputs that are always zero: their weights do nothing (read before h goes)
    u = _upper_inverse_factor(dampened(h, damp, consume))
    given = keep is not None
    keep = keep.clone().bool() if given else torch.ones_like(w, dtype=torch.bool)
    for a in range(0, cols, block):
        b = min(a + block, cols)
        part = w[:, a:b].double()  # w's own columns if w is float64, else a rows x block copy
        errors = _sparsegpt_block(part, u, keep, a, b, None if given else ratio, nm)
        if part.dtype != w.dtype:
            w[:, a:b] = part
        errors = errors.to(w.dtype)
        for c in range(b, cols, LAZY_COLUMNS):  # in place; U's rows of this block converted a slice at a time
            d = min(c + LAZY_COLUMNS, cols)
            w[:, c:d].addmm_(errors, u[a:b, c:d].to(w.dtype), alpha=-1)
    w.masked_fill_(keep.logical_not_(), 0.0)  # not w.mul_(keep): that converts keep to a weight-sized float copy
    return keep.logical_not_()


def _sparsegpt_block(part: torch.Tensor, u: torch.Tensor, keep: torch.Tensor, a: int, b: int, ratio: float | None,
                     nm: tuple[int, int] | None) -> torch.Tensor:
    """Prune and repair columns a..b-1 of the weight, `part` (float64), in place (keep filled in, unless ratio is
    None: keep is given); the scaled errors, for the later columns."""
    ud = u[a:b, a:b]
    scale = torch.diagonal(ud)
    errors = torch.zeros_like(part)
    if nm is None and ratio is not None:
        keep[:, a:b] = _keep_lowest(part.square().div_(scale.square()), ratio)  # one rows x block temporary
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
                 consume: bool = False, rows: int | None = None) -> torch.Tensor:
    """A repaired copy of weight by masked_lstsq_ (which see), the caller's weight left alone."""
    w = weight.detach().clone()
    masked_lstsq_(w, h, keep, damp, consume, rows)
    return w


def masked_lstsq_(w: torch.Tensor, h: torch.Tensor, keep: torch.Tensor, damp: float = DAMP, consume: bool = False,
                  rows: int | None = None) -> None:
    """w := the weights W' (zero where keep is False) minimising tr((W - W') Hd (W - W')^T), Hd = dampened(h), in
    place. Each row is its own system: solved `rows` rows at a time (default: inputs / 128, at least 32), so the
    ~9 float64 matrices conjugate gradients keep are chunk-sized (each 1/96 of H at 3072 inputs), not weight-sized.
    consume: h (float64) is dampened in place instead of copied."""
    hd = dampened(h, damp, consume)
    # fewer rows a chunk run slower: 512 x 2048 weights took 1.45x all rows' time by 32 rows, 2.1x by 16
    rows = rows or max(32, w.shape[1] // 128)
    for a in range(0, len(w), rows):
        w[a:a + rows] = _conjugate_gradients(w[a:a + rows].double(), hd, keep[a:a + rows].to(torch.float64))


def _conjugate_gradients(w: torch.Tensor, hd: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """masked_lstsq_'s answer for the rows w (free: 1 where a weight stays) by conjugate gradients preconditioned
    with H's diagonal, from w masked; a new tensor. Updated in place: seven rows x n matrices live, one transient."""
    rhs = torch.mm(w, hd).mul_(free)
    target = CG_TOL * rhs.norm(dim=1, keepdim=True).clamp_min(1e-300)
    x = w * free
    r = rhs.sub_(torch.mm(x, hd).mul_(free))  # the residual takes the right-hand side's place
    precondition = free / torch.diagonal(hd)
    z = r * precondition
    p, rz, hp = z.clone(), (r * z).sum(1, keepdim=True), torch.empty_like(z)
    for _ in range(CG_MAX_STEPS):
        if bool((r.norm(dim=1, keepdim=True) <= target).all()):
            break
        torch.mm(p, hd, out=hp).mul_(free)
        alpha = rz / (p * hp).sum(1, keepdim=True).clamp_min(1e-300)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, hp, value=-1)
        torch.mul(r, precondition, out=z)
        rz_next = (r * z).sum(1, keepdim=True)
        p.mul_(rz_next / rz.clamp_min(1e-300)).add_(z)
        rz = rz_next
    return x.mul_(free)


def output_change(weight: torch.Tensor, repaired: torch.Tensor, h: torch.Tensor) -> float:
    """tr((W - W') H (W - W')^T): the summed squared change of the layer's outputs over the calibration inputs
    (H undampened: what the layer really does)."""
    d = (weight.detach().double() - repaired.detach().double())
    return float(torch.einsum("ri,ij,rj->", d, h.double(), d))

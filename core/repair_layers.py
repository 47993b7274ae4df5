"""Repair a whole model's masked layers from calibration data, one layer at a time (core.repair does one layer).

Layers are visited in the order the forward pass first reaches them. For each, the calibration inputs are run
through the model as it is by then — the layers before it already pruned and repaired, so a layer repairs what
reaches it, as SparseGPT and Wanda do — and a forward hook sums H = X X^T of that layer's inputs alone (of a padded
text batch, at its real tokens only: core.token_positions). Memory at any time: the calibration inputs, one H
(inputs x inputs; a convolution's inputs are its unfolded patches, channels x kernel), one batch's forward pass and
temporaries of a chunk of rows or a block of columns; a Linear weight is repaired where it lies. Never the
activations of all layers (issue 14's bound: one layer's calibration inputs plus its H; bench.repair --memory).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from core.data import batches
from core.errors import PruneLabError
from core.protocols import RepairProgress
from core.prune.patterns import nm_mask
from core.prune.unstructured import magnitude_mask
from core.repair import masked_lstsq_, sparsegpt_
from core.structure import PRUNABLE
from core.token_positions import real_rows, real_tokens

REPAIRS = ("sparsegpt", "lstsq")  # what a mask method's --repair may be
HESSIAN_ROWS = 128  # input rows converted to float64 and added to H at a time (1 MiB at 1024 inputs)
# the layer's input rows (tokens, a convolution's positions, examples) per forward pass while H is summed: a forward
# pass holds a few activations of its batch at once (a transformer's MLP hidden layer twice, before and after its
# activation function), which with every calibration text in one batch came to more than the widest layer's inputs.
# 128, not 256: on bench.repair's 100M-parameter probe (width 768, MLP 3072) 256 rows per pass held 84.5 MiB at the
# first 3072-input layer against the 84 MiB bound, 128 rows 82.6 MiB (the later layers 79.6 -> 79.0)
BATCH_ROWS = 128


def forward_order(model: nn.Module, example_input: torch.Tensor, names: list[str]) -> list[str]:
    """names, in the order one forward pass first calls them (names never called go last, in their own order)."""
    modules = dict(model.named_modules())
    seen: list[str] = []
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: seen.append(n) if n not in seen else None)
             for n in names]
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen + [n for n in names if n not in seen]


def patches(module: nn.Module, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """The layer's inputs as rows of what its 2-D weight multiplies: (examples x positions, inputs); with `real`
    (core.token_positions.real_tokens of the batch), a text layer's rows at real tokens only."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C*k*k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return real_rows(x, real)


class _Reached(Exception):
    """Raised by the hook once a layer has seen this batch's inputs: the rest of the forward pass is not needed."""


def calls_per_forward(model: nn.Module, module: nn.Module, example_input: torch.Tensor) -> int:
    """How many times one forward pass calls `module` (more than once: a shared layer)."""
    count = [0]
    handle = module.register_forward_pre_hook(lambda m, a: count.__setitem__(0, count[0] + 1))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        handle.remove()
    return count[0]


def hessian(model: nn.Module, module: nn.Module, x: torch.Tensor, batch_size: int = 64, calls: int = 0,
            rows: int = HESSIAN_ROWS, columns: torch.Tensor | None = None) -> torch.Tensor:
    """H = X X^T (float64) of `module`'s inputs when `model` runs on x, its inputs in the order `columns` (default:
    as its weight's columns). With `calls` (its calls per forward pass, calls_per_forward) each batch's forward pass
    stops once the layer has had them: a layer near the input costs a fraction of a pass. Rows are converted and
    added `rows` at a time (a convolution's unfolded one example at a time): the float64 temporary is that chunk,
    not the batch."""
    size = module.weight[0].numel()  # inputs per output: in_features, or channels x kernel
    h = torch.zeros(size, size, dtype=torch.float64)
    seen, real = [0], [None]  # real: this batch's real-token positions (None: every position counts)

    def hook(_m: nn.Module, args: tuple) -> None:
        inputs = args[0].detach()
        for example in _examples(module, inputs, real[0]):
            part = patches(module, *example)
            for a in range(0, len(part), rows):
                chunk = part[a:a + rows] if columns is None else part[a:a + rows, columns]
                chunk = chunk.double()
                h.addmm_(chunk.T, chunk)
        seen[0] += 1
        if calls and seen[0] % calls == 0:
            raise _Reached

    handle = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for xb, _ in batches(x, torch.zeros(len(x)), batch_size):
                real[0] = real_tokens(model, xb)
                with contextlib.suppress(_Reached):
                    model(xb)
    finally:
        handle.remove()
    return h


def _examples(module: nn.Module, x: torch.Tensor, real: torch.Tensor | None) -> list[tuple]:
    """patches' arguments for a batch: a convolution's one example at a time (its unfolded patches are kernel-size
    times its input), any other layer's whole batch (its rows are views of its input)."""
    if isinstance(module, nn.Conv2d):
        return [(x[i:i + 1],) for i in range(len(x))]
    return [(x, real)]


def repairable(module: nn.Module) -> bool:
    """Layers core.repair can repair: Linear, and Conv2d without groups (a grouped or depthwise convolution's
    outputs each see their own inputs: one H would not describe them)."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def repair_masks(model: nn.Module, example_input: torch.Tensor, calib_x: torch.Tensor, how: str,
                 ratios: dict[str, float], keep: dict[str, torch.Tensor] | None = None,
                 nm: tuple[int, int] | None = None, progress: RepairProgress | None = None) -> dict[str, int]:
    """Mask and repair every layer of `ratios` in place (torch.nn.utils.prune masks over the repaired weights);
    returns the weights zeroed per layer. how="sparsegpt" chooses each mask as it repairs (ratio of the layer, or
    nm = (n kept, of every m) as core.config.Pattern says it); how="lstsq" repairs the masks given in `keep`
    (1 = stays; shaped like the weights) exactly."""
    if how not in REPAIRS:
        raise PruneLabError(f"unknown repair {how!r} (known: {', '.join(REPAIRS)})")
    modules = dict(model.named_modules())
    wanted = [n for n, r in ratios.items() if r > 0 or (keep is not None and n in keep)]
    for name in wanted:
        if not isinstance(modules.get(name), PRUNABLE):
            raise PruneLabError(f"{name!r} is not a Conv2d or Linear layer of this model")
    order = forward_order(model, example_input, wanted)
    removed, repaired = {}, {}
    for done, name in enumerate(order):
        if progress is not None:
            progress(done, len(order), name)
        mask = _repair_one(model, modules[name], calib_x, how, ratios.get(name, 0.0),
                           None if keep is None else keep[name], nm)
        removed[name] = int((~mask).sum())
        if repairable(modules[name]):
            repaired[name] = mask
    if progress is not None:
        progress(len(order), len(order), "")
    # masks attached last: a repaired weight is already zero where its mask is, so the forward passes that sum later
    # layers' H give the same inputs without torch.nn.utils.prune's hook, which makes a new masked weight on every
    # pass while the last one is still held (9 MiB more at bench.repair --memory's 3072 x 768 layers)
    for name in list(repaired):
        weight = modules[name].weight
        prune.custom_from_mask(modules[name], "weight", repaired.pop(name).to(weight.dtype))
    return removed


def _repair_one(model: nn.Module, module: nn.Module, calib_x: torch.Tensor, how: str, ratio: float,
                keep: torch.Tensor | None, nm: tuple[int, int] | None) -> torch.Tensor:
    """The layer's keep-mask (bool, shaped like its weight). A layer core.repair can repair is repaired and its
    weights zeroed where the mask is (the mask itself is left to the caller); any other gets its mask now. A Linear
    layer is repaired in its own storage (nothing weight-sized is copied); a convolution's weight is copied once,
    its columns in _columns' order."""
    weight = module.weight.detach()
    if not repairable(module):
        mask = keep if keep is not None else _first_keep(weight, ratio, nm)
        prune.custom_from_mask(module, "weight", mask.to(weight.dtype))
        return mask.bool()
    conv = weight.dim() == 4
    order = _columns(weight) if conv else None
    calls = calls_per_forward(model, module, calib_x[:1])
    h = hessian(model, module, calib_x, _batch_size(model, module, calib_x), calls, columns=order)
    w = weight.reshape(weight.shape[0], -1)[:, order] if conv else weight
    if how == "sparsegpt" and (nm is None or w.shape[1] % nm[1] == 0):
        mask = sparsegpt_(w, h, ratio=ratio, nm=None if nm is None else (nm[1] - nm[0], nm[1]),
                          consume=True)  # h is this layer's own: its storage becomes the factor
    else:  # given masks; or N:M groups that do not tile the inputs: the pattern's own mask, then least squares
        keep = keep if keep is not None else _first_keep(weight, ratio, nm)
        mask = keep.reshape(w.shape).bool() if not conv else keep.reshape(w.shape[0], -1)[:, order].bool()
        masked_lstsq_(w, h, mask, consume=True)
    del h  # the factor, n x n
    if conv:
        with torch.no_grad():
            weight.view(w.shape[0], -1)[:, order] = w
        back = torch.empty_like(mask)
        back[:, order] = mask
        mask = back
    return mask.view_as(weight)


def _batch_size(model: nn.Module, module: nn.Module, calib_x: torch.Tensor) -> int:
    """Calibration examples per forward pass while `module`'s H is summed: BATCH_ROWS of its input rows (as many
    as one example gives it: one, its tokens or its convolution positions), at least one example."""
    rows = [0]

    def hook(_m: nn.Module, args: tuple) -> None:
        rows[0] = len(patches(module, args[0].detach()))
        raise _Reached

    handle = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad(), contextlib.suppress(_Reached):
            model(calib_x[:1])
    finally:
        handle.remove()
    return max(1, BATCH_ROWS // max(1, rows[0]))


def _columns(weight: torch.Tensor) -> torch.Tensor:
    """Column order of the 2-D weight that puts a convolution's input channels last (kernel position major), as
    N:M patterns group them (core.prune.patterns.nm_mask); the identity for a Linear layer."""
    index = torch.arange(weight[0].numel())
    return index.view(weight.shape[1:]).movedim(0, -1).flatten() if weight.dim() == 4 else index


def _first_keep(weight: torch.Tensor, ratio: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """A magnitude keep-mask at the ratio, or the N:M pattern's (keep n of every m)."""
    if nm is not None:
        return nm_mask(weight.detach().abs(), nm[0], nm[1]).bool()
    return magnitude_mask(weight, ratio).bool()

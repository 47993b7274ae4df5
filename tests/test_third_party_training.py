"""The third-party suite's models are trained on first load (sample_models.third_party.train) and cached; their
weights, and so every benchmark figure measured on them, must not depend on how many threads torch had in the
process that happened to train them first (HF MobileNetV2: 0.899 test accuracy trained at 1 thread, 0.83 at 2)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from core.threads import torch_threads
from sample_models import third_party


def _small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


def _small_data() -> third_party.Split:
    split = third_party.mnist_small()
    return third_party.Split(split.train_x[:640], split.train_y[:640], split.test_x[:64], split.test_y[:64])


def _entry() -> third_party.ThirdParty:
    """A suite entry trained as the suite trains, small enough for a test: one epoch of 640 images."""
    return replace(third_party.SUITE["effnet"], build=_small_net, data=_small_data, epochs=1)


def _weights(threads: int) -> dict[str, torch.Tensor]:
    with torch_threads(threads):
        return third_party.train(_entry()).state_dict()


def test_training_gives_the_same_weights_whatever_the_threads_of_the_process():
    one, two = _weights(1), _weights(2)
    assert all(torch.equal(one[k], two[k]) for k in one), [k for k in one if not torch.equal(one[k], two[k])]


def test_training_leaves_the_processs_thread_count_as_it_was():
    with torch_threads(2):
        third_party.train(_entry())
        assert torch.get_num_threads() == 2

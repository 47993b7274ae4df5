"""A cut that leaves a model which no longer runs is refused at the cut, naming the module that fails and the method
that still works (issue 13: a third-party model whose code assumes its widths crashed deep inside a run with a bare
RuntimeError). Here a module reshapes to a hard-coded 8 channels, so channel pruning of the conv before it breaks
the classifier's matrix product."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import experiment
from core.config import PruneConfig
from core.errors import PruneLabError
from core.spec import ModelSpec, fingerprint


class AssumesEight(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 8, -1).mean(-1)  # written for 8 channels


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.pool = AssumesEight()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))))


def _spec() -> ModelSpec:
    torch.manual_seed(0)
    model = Net().eval()
    return ModelSpec("assumes-eight", model, torch.randn(1, 1, 8, 8), None, "", fingerprint(model))


def test_a_cut_that_breaks_the_forward_is_refused_naming_the_module_and_a_method_that_works():
    spec = _spec()
    config = PruneConfig(model=spec.name, method="channel", ratios={"conv": 0.5}, model_fingerprint=spec.fingerprint)
    with pytest.raises(PruneLabError) as err:
        experiment.run(spec, config)
    message = str(err.value)
    assert "head" in message and "Linear" in message and "unstructured" in message
    assert "\n" not in message


def test_a_cut_that_runs_is_not_disturbed_and_train_modes_are_kept():
    """The check runs the cut model once without gradients; modes set per module come back as they were."""
    from core.prune import check_runs

    spec = _spec()
    model = Net().train()
    model.conv.eval()  # a frozen part of a model in training
    check_runs(model, spec.example_input, "channel")
    assert model.training and model.head.training and not model.conv.training

"""Neuron pruning: remove hidden units of MLP layers (a hidden Linear's outputs and the next layer's
inputs), the channel cut restricted to hidden Linear layers outside attention and the classifier."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.graph import Unit, neuron_units
from core.methods.channel import Channel


class Neuron(Channel):
    name: ClassVar[str] = "neuron"
    unit: ClassVar[str] = "units"
    unit_heading: ClassVar[str] = "hidden layer (share of its units)"
    all_label: ClassVar[str] = "All hidden layers"
    help: ClassVar[str] = "removes hidden units of MLP layers · smaller and faster"
    no_units: ClassVar[str] = "has no hidden Linear layers (outside attention modules and the classifier)"
    swept: ClassVar[bool] = False
    solved: ClassVar[bool] = False
    hardware_aware: ClassVar[bool] = False

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return neuron_units(model, example_input)

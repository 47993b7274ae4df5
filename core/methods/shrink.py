"""ShrinkMethod: the common part of the structural methods (channel, neuron, head, layer).

They take parts out of the network, which gets smaller and faster; BatchNorm statistics are
re-estimated on the calibration images after every cut, since the layers before them changed.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.finetune import recalibrate_batchnorm
from core.importance import Calibration
from core.methods.base import Method
from core.protocols import ConfigLike


class ShrinkMethod(Method):
    """A method that removes channels, heads or blocks physically."""

    mask: ClassVar[bool] = False

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str]) -> dict[str, int]:
        removed = self.shrink(model, example_input, config, ratios, calib, blocks)
        recalibrate_batchnorm(model, calib.x)
        return removed

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str]) -> dict[str, int]:
        """Take this method's parts out of `model` in place; returns what was removed per unit."""
        raise NotImplementedError

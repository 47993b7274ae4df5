"""ShrinkMethod: the common part of the structural methods (channel, neuron, head, layer).

They take parts out of the network, which gets smaller and faster; BatchNorm statistics are
re-estimated on the calibration images after every cut, since the layers before them changed.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn

from core.finetune import recalibrate_batchnorm
from core.importance import Calibration
from core.methods.base import Method
from core.protocols import ConfigLike, RepairProgress
from core.repair_structured import STRUCTURED_REPAIRS, refit_consumers


class ShrinkMethod(Method):
    """A method that removes channels, heads or blocks physically."""

    mask: ClassVar[bool] = False
    repairs: ClassVar[tuple[str, ...]] = STRUCTURED_REPAIRS

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str], progress: RepairProgress | None = None) -> dict[str, int]:
        """Shrink, re-estimate BatchNorm statistics; with a repair, refit the layers whose inputs were cut to the
        unpruned model's outputs (core.repair_structured) and re-estimate the statistics after them again."""
        original = copy.deepcopy(model) if config.repair != "none" else None
        outputs: dict[str, list[int]] = {}
        removed = self.shrink(model, example_input, config, ratios, calib, blocks, outputs)
        recalibrate_batchnorm(model, calib.x)
        if original is not None:
            refit_consumers(original, model, example_input, calib.x, config.repair, outputs, progress)
            recalibrate_batchnorm(model, calib.x)
        return removed

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str], outputs: dict[str, list[int]] | None = None) -> dict[str, int]:
        """Take this method's parts out of `model` in place; returns what was removed per unit. `outputs`, if
        given, is filled with the output indices each Conv2d/Linear lost, by name (for the repair: a layer that
        lost outputs is fitted to the unpruned layer's remaining ones)."""
        raise NotImplementedError

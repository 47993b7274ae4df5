"""Channel pruning: remove the lowest-scoring channels of each coupled channel group (filters and
everything that must shrink with them), cut through Torch-Pruning."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.graph import Unit, channel_units
from core.importance import Calibration, channel_scores
from core.methods.shrink import ShrinkMethod
from core.protocols import ConfigLike
from core.prune.channel import apply_channel


class Channel(ShrinkMethod):
    name: ClassVar[str] = "channel"
    unit: ClassVar[str] = "channels"
    unit_heading: ClassVar[str] = "coupled channel group"
    help: ClassVar[str] = "removes coupled channels (filters) · smaller and faster"
    swept: ClassVar[bool] = True
    solved: ClassVar[bool] = True
    hardware_aware: ClassVar[bool] = True
    width_units: ClassVar[str | None] = "channel"

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return channel_units(model, example_input)

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str], outputs: dict[str, list[int]] | None = None) -> dict[str, int]:
        scores = channel_scores(model, example_input, config.criterion, calib, config.seed)
        return apply_channel(model, {u: r for u, r in ratios.items() if r > 0}, example_input, scores, outputs)

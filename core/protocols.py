"""What the engine's lower layers read from objects defined above them, as Protocols.

core.config validates configs through the method registry (core.methods), and the methods cut through
core.prune; so neither core.methods nor core.prune may import core.config. They read a config by these
structural types instead (a PruneConfig satisfies them), and the import graph stays acyclic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from core.importance import Calibration

RepairProgress = Callable[[int, int, str], None]  # a repair's (layers done, layers in all, the layer it starts)


class PatternLike(Protocol):
    """core.config.Pattern as a method reads it."""

    n: int
    m: int
    block: tuple[int, int]


class Cutter(Protocol):
    """The part of a registered method (core.methods.Method) that core.prune calls."""

    mask: bool

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str], progress: RepairProgress | None = None) -> dict[str, int]: ...


class ConfigLike(Protocol):
    """core.config.PruneConfig as core.prune and core.methods read it."""

    model: str
    method: str
    model_fingerprint: str
    ratios: dict[str, float]
    criterion: str
    seed: int
    calibration_samples: int
    pattern: PatternLike
    remove_blocks: tuple[str, ...]
    repair: str

    @property
    def technique(self) -> Cutter: ...


class CostLike(Protocol):
    """core.estimate.CostModel's three estimates, one per kind of cut."""

    def masked(self, ratios: dict[str, float]) -> dict[str, int]: ...
    def shrunk(self, ratios: dict[str, float]) -> dict[str, int]: ...
    def without_blocks(self, removed: set[str]) -> dict[str, int]: ...

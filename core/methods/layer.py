"""Layer pruning: remove whole residual blocks (each becomes the identity its skip connection already
carries), the least important first: by block influence (1 - cosine of the block's input and output,
Men et al. 2024) or by the accuracy lost without each block. A config names the blocks (remove_blocks);
no criterion ranks them."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import Unit, block_units
from core.importance import Calibration
from core.importance.blocks import block_drops, block_scores
from core.methods.base import PlanOptions
from core.methods.shrink import ShrinkMethod
from core.protocols import ConfigLike, CostLike
from core.prune import calibration
from core.prune.layers import rank_blocks, remove_blocks
from core.ratios import check_ratio
from core.spec import ModelSpec
from core.structure import why_no_blocks

RANKINGS = ("cosine", "sensitivity")


class Layer(ShrinkMethod):
    name: ClassVar[str] = "layer"
    repairs: ClassVar[tuple[str, ...]] = ()  # whole blocks go: no layer's inputs narrow, nothing to refit
    unit: ClassVar[str] = "block"
    help: ClassVar[str] = "removes whole residual blocks · smaller and faster"
    no_units: ClassVar[str] = "has no residual blocks whose output has the shape of their input"
    sliders: ClassVar[bool] = False
    takes_blocks: ClassVar[bool] = True
    uses_criterion: ClassVar[bool] = False
    ranking: ClassVar[str] = "Blocks are ranked by how little they change their input (block influence)."

    def criteria(self) -> tuple[str, ...]:
        """Blocks are ranked by --rank, not by a criterion: only the default (unused) is accepted."""
        return ("l1",)

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        return block_units(model, example_input)

    def plan(self, spec: ModelSpec, ratio: float | None, options: PlanOptions) -> tuple[dict[str, float],
                                                                                        tuple[str, ...]]:
        if ratio is None:
            raise PruneLabError(f"--ratio is needed for the {self.name} method")
        ratio = check_ratio(self.name, ratio)
        return {}, tuple(blocks_to_remove(spec, ratio, options.rank, options.calibration_samples, options.seed))

    def shrink(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str], outputs: dict[str, list[int]] | None = None) -> dict[str, int]:
        remove_blocks(model, blocks, example_input)
        return dict.fromkeys(blocks, 1)

    def what_changed(self, removed: dict[str, int], blocks: tuple[str, ...]) -> str | None:
        return f"Blocks removed (now identities): {', '.join(blocks) or 'none'}."

    def estimate(self, cost: CostLike, ratios: dict[str, float]) -> dict[str, int]:
        """A block is removed at ratio 1 (the dashboard and configs pass 1.0 for each removed block)."""
        return cost.without_blocks({u for u, r in ratios.items() if r >= 0.5})

    def step_targets(self, spec: ModelSpec, config: ConfigLike, model: nn.Module, fraction: float,
                     done: list[str]) -> tuple[dict[str, float], list[str]]:
        """The first ceil(fraction x blocks) of the config's blocks, less those already removed."""
        blocks = list(config.remove_blocks)
        return {}, [b for b in blocks[: math.ceil(fraction * len(blocks) - 1e-9)] if b not in done]


def blocks_to_remove(spec: ModelSpec, ratio: float, rank: str = "cosine", calibration_samples: int = 512,
                     seed: int = 0) -> list[str]:
    """The round(ratio x removable blocks) blocks ranked least important, least important first."""
    if rank not in RANKINGS:
        raise PruneLabError(f"unknown block ranking {rank!r}; choose one of {', '.join(RANKINGS)}")
    blocks = [u.name for u in block_units(spec.model, spec.example_input)]
    if not blocks:
        raise PruneLabError(f"{spec.name} has nothing the layer method can prune "
                            f"({why_no_blocks(copy.deepcopy(spec.model), spec.example_input)})")
    calib = calibration(spec, calibration_samples, seed)
    scores = (block_scores(spec.model, blocks, calib.x) if rank == "cosine"
              else block_drops(spec, blocks, calib.x, seed))
    return rank_blocks(scores)[: round(ratio * len(blocks))]

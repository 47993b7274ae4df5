"""From one number to a config: the per-unit ratios (or blocks) that "remove R" means for each method.

Each registered method (core.methods) says what R means for it (Method.plan):
- unstructured: R of every layer's weights, or — global scope — one score threshold across all layers
  (each layer loses its weights below it; layers differ, the total is R);
- nm: every layer that can hold the pattern gets 1 - N/M (R must be that or omitted);
- block, channel, neuron, head: R of every layer / channel group / hidden-unit group / attention module;
- layer: the round(R x blocks) removable blocks that matter least, ranked by how little a block changes
  its input (cosine) or by the accuracy lost without it (sensitivity, on training images the
  calibration did not use; BatchNorm re-estimated).
The command line and the dashboard both call `plan`, so "--ratio 0.5" means the same everywhere.
"""

from __future__ import annotations

from core import methods
from core.config import Pattern
from core.errors import PruneLabError
from core.methods.layer import RANKINGS as RANKINGS
from core.methods.layer import blocks_to_remove as blocks_to_remove
from core.methods.nm import nm_ratios as nm_ratios
from core.methods.unstructured import global_ratios as global_ratios
from core.spec import ModelSpec

SCOPES = ("layer", "global")


def plan(spec: ModelSpec, method: str, ratio: float | None, *, criterion: str = "l1", pattern: Pattern | None = None,
         scope: str = "layer", rank: str = "cosine", calibration_samples: int = 512,
         seed: int = 0) -> tuple[dict[str, float], tuple[str, ...]]:
    """(ratios, remove_blocks) for a PruneConfig of `method` removing `ratio` (see module docstring)."""
    if scope not in SCOPES:
        raise PruneLabError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    options = methods.PlanOptions(criterion, pattern or Pattern(), scope, rank, calibration_samples, seed)
    return methods.get(method).plan(spec, ratio, options)

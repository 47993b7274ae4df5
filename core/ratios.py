"""The one check of a pruning ratio, below every module that takes one (core.config re-exports it).

A leaf module: core.config validates through core.methods, whose cutting code checks ratios too, so the
check cannot live in core.config without an import cycle."""

from __future__ import annotations

import math
from typing import Any

from core.errors import PruneLabError


def check_ratio(name: str, ratio: Any) -> float:
    """A pruning ratio is the fraction removed: a finite number with 0 <= ratio < 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise PruneLabError(f"ratio for {name!r} must be a number, got {ratio!r}")  # NaN/inf checked below
    ratio = float(ratio)
    if not math.isfinite(ratio) or not 0.0 <= ratio < 1.0:
        raise PruneLabError(f"ratio for {name!r} must be at least 0 and below 1, got {ratio}")
    return ratio

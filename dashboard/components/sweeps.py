"""The sensitivity sweep settings the pages share: read from the Sensitivity page's widgets."""

from __future__ import annotations

import pandas as pd

from core.sensitivity import DEFAULT_GRID, SweepSpec, cache_path
from dashboard import cache, state

GRID_CHOICES = tuple(round(0.05 * i, 2) for i in range(1, 20))


def current_spec(name: str, granularity: str | None = None, criterion: str | None = None) -> SweepSpec:
    """The SweepSpec the Sensitivity page is set to (granularity/criterion may be overridden)."""
    settings = state.sweep_settings()
    return SweepSpec(
        model=name, fingerprint=cache.spec(name).fingerprint,
        granularity=granularity or settings.get("granularity", "channel"),
        criterion=criterion or settings.get("criterion", "l1"),
        grid=tuple(sorted(settings.get("grid", DEFAULT_GRID))) or DEFAULT_GRID,
        eval_samples=int(settings.get("eval_samples", 1000)),
        calibration_samples=int(settings.get("calibration_samples", 512)),
        seed=int(settings.get("seed", 0)),
    )


def cached_table(sweep: SweepSpec) -> pd.DataFrame | None:
    """The sweep's table if it has been measured (read from the disk cache), else None. Several parts
    of every rerun ask for it, so the parsed table is kept in memory until the file changes."""
    path = cache_path(sweep)
    if not path.exists():
        return None
    return cache.sweep_table(str(path), path.stat().st_mtime_ns, sweep.model)

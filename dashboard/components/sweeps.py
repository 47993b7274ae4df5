"""The sensitivity sweep settings the pages share: read from the Sensitivity page's widgets."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.sensitivity import DEFAULT_GRID, SweepSpec, cache_path
from dashboard import cache

GRID_CHOICES = tuple(round(0.05 * i, 2) for i in range(1, 20))


def current_spec(name: str, granularity: str | None = None, criterion: str | None = None) -> SweepSpec:
    """The SweepSpec the Sensitivity page is set to (granularity/criterion may be overridden)."""
    state = st.session_state
    spec = cache.spec(name)
    return SweepSpec(
        model=name, fingerprint=spec.fingerprint,
        granularity=granularity or state.get("sens-granularity", "channel"),
        criterion=criterion or state.get("sens-criterion", "l1"),
        grid=tuple(sorted(state.get("sens-grid", DEFAULT_GRID))) or DEFAULT_GRID,
        eval_samples=int(state.get("sens-eval", 1000)),
        calibration_samples=int(state.get("sens-calib", 512)),
        seed=int(state.get("sens-seed", 0)),
    )


def cached_table(sweep: SweepSpec) -> pd.DataFrame | None:
    """The sweep's table if it has been measured (read from the disk cache), else None. Several parts
    of every rerun ask for it, so the parsed table is kept in memory until the file changes."""
    path = cache_path(sweep)
    if not path.exists():
        return None
    return cache.sweep_table(str(path), path.stat().st_mtime_ns, sweep.model)

"""The sensitivity sweep settings the pages share: read from the Sensitivity page's widgets."""

from __future__ import annotations

import pandas as pd

from core.sensitivity import SweepSpec, cache_path
from core.workflows import defaults
from dashboard import cache, jobs, state

GRID_CHOICES = tuple(round(0.05 * i, 2) for i in range(1, 20))


def current_spec(name: str, granularity: str | None = None, criterion: str | None = None) -> SweepSpec:
    """The SweepSpec the Sensitivity page is set to (granularity/criterion may be overridden); a setting not made
    yet has core's default (core.workflows.defaults, as the CLI's sensitivity options)."""
    restore_last(name)
    settings = state.sweep_settings()
    return SweepSpec(
        model=name, fingerprint=cache.spec(name).fingerprint,
        granularity=granularity or settings.get("granularity", defaults.METHOD),
        criterion=criterion or settings.get("criterion", defaults.SWEEP_CRITERION),
        grid=tuple(sorted(settings.get("grid", defaults.SWEEP_GRID))) or defaults.SWEEP_GRID,
        eval_samples=int(settings.get("eval_samples", defaults.SWEEP_EVAL_SAMPLES)),
        calibration_samples=int(settings.get("calibration_samples", defaults.SWEEP_CALIBRATION_SAMPLES)),
        seed=int(settings.get("seed", defaults.SWEEP_SEED)),
    )


def restore_last(name: str) -> None:
    """A new session takes the settings of the sweep last started for the model, so a refresh shows that sweep
    (its progress, then its heatmap); before the Sensitivity page's controls are drawn."""
    if state.sweep_settings():  # set in this session: no job files to read on this rerun
        return
    last = jobs.current("sweep", name)
    if last is not None:
        state.restore_sweep_settings(last.settings.get("sweep_spec", {}))


def cached_table(sweep: SweepSpec) -> pd.DataFrame | None:
    """The sweep's table if it has been measured (read from the disk cache), else None. Several parts
    of every rerun ask for it, so the parsed table is kept in memory until the file changes."""
    path = cache_path(sweep)
    if not path.exists():
        return None
    return cache.sweep_table(str(path), path.stat().st_mtime_ns, sweep.model)

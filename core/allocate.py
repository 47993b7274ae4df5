"""Budget solver: per-unit ratios that meet a target (FLOPs or params reduction factor, size in MB, or
latency in ms) under per-unit bounds and locks, by one of three strategies:

- uniform: one ratio for every unit, the smallest that meets the target;
- global: one importance threshold across all units (each unit loses its channels/weights below it);
- sensitivity: greedy on the sensitivity curves — repeatedly take the step (any unit, any larger ratio)
  with the least predicted accuracy drop per unit of cost saved, until the target is met. A language model's
  sweep is judged by perplexity instead (lower is better): the curves are its increase (core.metric_keys).

Costs come from core.estimate (exact for conv/linear/norm layers). The predicted accuracy drop of a
configuration is the sum of the single-unit drops measured by the sweep (an additive approximation:
it ignores interactions between units and the recovery fine-tuning brings). A latency target is met
on an estimate: the baseline's measured latency scaled by the share of FLOPs kept, or — hardware-aware,
given a core.hardware.LatencyTable — minus the measured time each unit's layers save at their widths.

Hardware-aware allocation keeps every unit at a width the runtime is fast at (core.hardware), and the
sensitivity strategy then weighs each move by the measured time it saves rather than by FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core import methods
from core.errors import PruneLabError
from core.estimate import CostModel
from core.graph import kept_channels, ratio_for
from core.metric_keys import sweep_metric

STRATEGIES = ("uniform", "global", "sensitivity")
TARGETS = ("flops", "params", "size_mb", "latency_ms", "speedup")
STEP = 0.05  # ratio resolution of the sensitivity strategy
MAX_RATIO = 0.9  # the largest ratio the default sweep measures; nothing beyond is predicted


@dataclass(frozen=True)
class Target:
    """kind "flops"/"params": value = reduction factor (2 = half); "size_mb": fp32 MB; "latency_ms": ms;
    "speedup": value = how many times faster than the baseline (latency at most baseline / value)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in TARGETS:
            raise PruneLabError(f"unknown target {self.kind!r}; choose one of {', '.join(TARGETS)}")
        if not math.isfinite(self.value) or self.value <= 0:
            raise PruneLabError(f"target {self.kind} must be a positive number, got {self.value}")
        if self.kind in ("flops", "params", "speedup") and self.value < 1:
            raise PruneLabError(f"a {self.kind} reduction factor must be at least 1 (2 = half), got {self.value}")


@dataclass(frozen=True)
class Bounds:
    """Per-unit limits: min/max ratio (defaults 0 and MAX_RATIO) and locked units held at a fixed ratio."""

    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    locked: dict[str, float] = field(default_factory=dict)

    def range(self, unit: str) -> tuple[float, float]:
        if unit in self.locked:
            return self.locked[unit], self.locked[unit]
        low, high = self.low.get(unit, 0.0), self.high.get(unit, MAX_RATIO)
        if low > high:
            raise PruneLabError(f"minimum ratio {low} of {unit} is above its maximum {high}")
        return low, high


@dataclass(frozen=True)
class Allocation:
    strategy: str
    target: Target
    ratios: dict[str, float]
    estimate: dict[str, int]  # core.estimate figures of the chosen ratios
    predicted_drop: float | None  # how much worse `metric` gets (accuracy points 0..1, or perplexity); None: no sweep
    met: bool
    metric: str = "accuracy"  # the task measure the sensitivity curves (and predicted_drop) are in


class Budget:
    """Turns a Target into a test on estimated costs of one model and method."""

    def __init__(self, cost_model: CostModel, target: Target, base_latency_ms: float | None = None,
                 hardware=None) -> None:
        if target.kind in ("latency_ms", "speedup") and not base_latency_ms:
            raise PruneLabError("a latency target needs the baseline's measured latency")
        technique = methods.get(cost_model.method)
        if technique.mask and target.kind == "size_mb":
            raise PruneLabError("masks do not shrink a dense file: use a size target with channel pruning")
        if hardware is not None and not technique.hardware_aware:
            raise PruneLabError("hardware-aware allocation needs channel pruning (masks do not change widths)")
        self.cost_model, self.target, self.base_latency_ms = cost_model, target, base_latency_ms
        self.hardware = hardware
        self.units = {u.name: u for u in cost_model.units}
        self.base = cost_model.estimate({})

    def kept(self, unit: str, ratio: float) -> int:
        return kept_channels(self.units[unit], ratio)

    def latency(self, ratios: dict[str, float]) -> float:
        """Estimated latency (ms) of ratios: see latency_estimate."""
        return latency_estimate(self.cost_model, self.base_latency_ms or 0.0, ratios, self.hardware, self.base)

    def cost(self, ratios: dict[str, float]) -> float:
        """The quantity the target constrains (lower is better): FLOPs, params, MB or ms."""
        est = self.cost_model.estimate(ratios)
        sparse = methods.get(self.cost_model.method).mask  # masks save only non-zero params / FLOPs
        flops = est["sparse_flops" if sparse else "flops"]
        if self.target.kind == "flops":
            return flops
        if self.target.kind == "params":
            return est["nonzero_params" if sparse else "params"]
        if self.target.kind == "size_mb":
            return est["size_bytes"] / 1e6
        return self.latency(ratios)

    def limit(self) -> float:
        if self.target.kind in ("flops", "params"):
            return self.cost({}) / self.target.value
        if self.target.kind == "speedup":
            return self.base_latency_ms / self.target.value
        return self.target.value

    def options(self, unit: str, bounds: Bounds) -> list[float]:
        """Ratios a unit may take within its bounds: fast widths only when hardware-aware."""
        low, high = bounds.range(unit)
        grid = self.hardware.ratios_for(unit) if self.hardware is not None else _steps(-STEP, high)
        allowed = [r for r in grid if low - 1e-9 <= r <= high + 1e-9]
        return allowed or [low]

    def snap(self, unit: str, ratio: float, bounds: Bounds) -> float:
        """Hardware-aware: the ratio of the fast width at or below the width `ratio` keeps."""
        if self.hardware is None:
            return ratio
        snapped = ratio_for(self.units[unit], self.hardware.snap(unit, self.kept(unit, ratio)))
        low, high = bounds.range(unit)
        fits = [r for r in self.options(unit, bounds) if r >= snapped - 1e-9]
        return min(fits) if fits and low <= snapped <= high else min(max(snapped, low), high)

    def saving(self, before: dict[str, float], after: dict[str, float]) -> float:
        """How much a move saves: measured time (hardware-aware) or the targeted cost."""
        if self.hardware is not None:
            return self.latency(before) - self.latency(after)
        return self.cost(before) - self.cost(after)

    def met(self, ratios: dict[str, float]) -> bool:
        return self.cost(ratios) <= self.limit() * (1 + 1e-9)


def latency_estimate(cost_model: CostModel, base_ms: float, ratios: dict[str, float], hardware=None,
                     base: dict[str, int] | None = None) -> float:
    """Estimated latency (ms) of ratios, from the baseline's measured latency base_ms: with a width-latency table
    (core.hardware.LatencyTable), base_ms minus each unit's measured saving at the width it keeps; otherwise base_ms
    scaled by the share of FLOPs kept (non-zero FLOPs for masks). base: cost_model.estimate({}), if at hand."""
    if hardware is not None:
        units = {u.name: u for u in cost_model.units}
        return base_ms - sum(hardware.saving(u, kept_channels(units[u], r)) for u, r in ratios.items())
    key = "sparse_flops" if methods.get(cost_model.method).mask else "flops"  # masks save only non-zero FLOPs
    base = base or cost_model.estimate({})
    return base_ms * cost_model.estimate(ratios)[key] / base[key]


# ---- sensitivity curves ------------------------------------------------------------------------------


def drop_curves(table: pd.DataFrame, column: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per unit: (ratios, how much worse the task measure got: by default the table's own (core.metric_keys.
    sweep_metric: accuracy drop, or a language model's perplexity increase), else `column`), starting at (0, 0)
    and made non-decreasing (a larger cut is assumed to hurt at least as much; the sweep's noise otherwise rewards
    cutting more)."""
    column = column or sweep_metric(table.columns).change_name
    curves = {}
    for unit, rows in table.groupby("unit", sort=False):
        rows = rows.sort_values("ratio")
        r = np.concatenate([[0.0], rows["ratio"].to_numpy(float)])
        d = np.concatenate([[0.0], rows[column].to_numpy(float)])
        curves[unit] = (r, np.maximum.accumulate(np.maximum(d, 0.0)))
    return curves


def predicted_drop(curves: dict[str, tuple[np.ndarray, np.ndarray]], ratios: dict[str, float]) -> float:
    """Sum of the single-unit accuracy drops at these ratios (linear between measured ratios)."""
    return float(sum(np.interp(r, *curves[u]) for u, r in ratios.items() if u in curves and r > 0))


# ---- strategies --------------------------------------------------------------------------------------


def _up(ratio: float) -> float:
    """Round a ratio up to the sliders' resolution (0.01): cutting slightly more still meets the target."""
    return math.ceil(round(ratio * 100, 6)) / 100


def _bisect(make, budget: Budget, lo: float, hi: float, iters: int = 40) -> float:
    """Smallest x in [lo, hi] with budget.met(make(x)), for a make() whose cost falls as x grows."""
    if not budget.met(make(hi)):
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if budget.met(make(mid)) else (mid, hi)
    return hi


def uniform(units: list[str], budget: Budget, bounds: Bounds) -> dict[str, float]:
    def make(r: float) -> dict[str, float]:
        return {u: budget.snap(u, min(max(r, bounds.range(u)[0]), bounds.range(u)[1]), bounds) for u in units}
    r = _bisect(make, budget, 0.0, max(bounds.range(u)[1] for u in units))
    return make(_up(r))


def global_threshold(units: list[str], budget: Budget, bounds: Bounds, scores: dict) -> dict[str, float]:
    """One threshold t over importance scores: each unit loses the share of its scores below t."""
    flat = {u: np.sort(np.asarray(scores[u], dtype=float).ravel()) for u in units}

    def make(t: float) -> dict[str, float]:
        out = {}
        for u in units:
            low, high = bounds.range(u)
            share = np.searchsorted(flat[u], t, side="left") / len(flat[u])
            out[u] = budget.snap(u, min(max(_up(float(share)), low), high), bounds)
        return out
    top = max(float(s[-1]) for s in flat.values())
    return make(_bisect(make, budget, 0.0, top * (1 + 1e-6)))


def _candidates(units: list[str], ratios: dict[str, float], budget: Budget, bounds: Bounds, curves: dict):
    """Every single-unit move to a larger allowed ratio: (unit, new ratio, added predicted drop)."""
    for u in units:
        here = float(np.interp(ratios[u], *curves[u])) if u in curves else 0.0
        for r in budget.options(u, bounds):
            if r > ratios[u] + 1e-9:
                yield u, r, max(float(np.interp(r, *curves[u])) - here, 0.0) if u in curves else 0.0


def sensitivity(units: list[str], budget: Budget, bounds: Bounds, curves: dict) -> dict[str, float]:
    """Greedy on the sweep's curves: from the lower bounds, repeatedly make the single-unit move (to any
    larger allowed ratio) with the least added predicted drop per cost saved — per measured time saved
    when hardware-aware. A move that overshoots the target is shortened to the smallest allowed ratio
    that meets it, and steps the target does not need are undone."""
    missing = [u for u in units if u not in curves and u not in bounds.locked]
    if missing:
        raise PruneLabError(f"the sensitivity table has no curve for: {', '.join(missing)}")
    ratios = {u: budget.options(u, bounds)[0] for u in units}
    while not budget.met(ratios):
        best = None
        for u, r, worse in _candidates(units, ratios, budget, bounds, curves):
            trial = {**ratios, u: r}
            saved = budget.saving(ratios, trial)
            if budget.cost(trial) >= budget.cost(ratios):  # no progress toward the target
                continue
            key = ((worse + 1e-9) / saved if saved > 0 else math.inf, worse)
            if best is None or key < best[0]:
                best = (key, u, r)
        if best is None:
            break  # every unit is at its maximum: the target cannot be met within the bounds
        _, u, r = best
        shorter = [x for x in budget.options(u, bounds) if ratios[u] < x <= r and budget.met({**ratios, u: x})]
        ratios[u] = min(shorter) if shorter else r
    return _give_back(ratios, budget, bounds)


def _steps(start: float, stop: float) -> list[float]:
    """Ratios from start (exclusive) to stop (inclusive) on the STEP grid, ascending."""
    return [round(float(x), 4) for x in np.arange(start + STEP, stop + 1e-9, STEP)]


def _give_back(ratios: dict[str, float], budget: Budget, bounds: Bounds) -> dict[str, float]:
    """Lower ratios one allowed step at a time, largest first, while the target stays met."""
    if not budget.met(ratios):
        return ratios
    changed = True
    while changed:
        changed = False
        for u in sorted(ratios, key=ratios.get, reverse=True):
            lower = [r for r in budget.options(u, bounds) if r < ratios[u] - 1e-9]
            if lower and budget.met({**ratios, u: lower[-1]}):
                ratios[u], changed = lower[-1], True
    return ratios


def allocate(strategy: str, cost_model: CostModel, target: Target, bounds: Bounds | None = None,
             table: pd.DataFrame | None = None, scores: dict | None = None,
             base_latency_ms: float | None = None, hardware=None) -> Allocation:
    """Per-unit ratios for `target` by `strategy` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise PruneLabError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    bounds = bounds or Bounds()
    units = [u.name for u in cost_model.units]
    unknown = sorted((set(bounds.low) | set(bounds.high) | set(bounds.locked)) - set(units))
    if unknown:
        raise PruneLabError(f"bounds name units this model does not have: {', '.join(unknown)}")
    budget = Budget(cost_model, target, base_latency_ms, hardware)
    curves = drop_curves(table) if table is not None else None
    if strategy == "uniform":
        ratios = uniform(units, budget, bounds)
    elif strategy == "global":
        if scores is None:
            raise PruneLabError("the global strategy needs importance scores")
        ratios = global_threshold(units, budget, bounds, scores)
    else:
        if curves is None:
            raise PruneLabError("the sensitivity strategy needs a sensitivity table (run a sweep first)")
        ratios = sensitivity(units, budget, bounds, curves)
    return Allocation(strategy, target, ratios, cost_model.estimate(ratios),
                      predicted_drop(curves, ratios) if curves else None, budget.met(ratios),
                      sweep_metric(table.columns).key if table is not None else "accuracy")

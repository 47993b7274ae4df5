"""Comparing recorded runs: how two configs differ, and the Pareto front of accuracy against a cost. Pure functions
on configs and records (core.store.Experiment), kept apart from the SQLite store that reads them."""

from __future__ import annotations

from typing import Any

from core.config import PruneConfig
from core.metric_keys import PERPLEXITY_METRIC, TEST_ACCURACY, TaskMetric
from core.store_rows import Experiment


def config_diff(a: PruneConfig, b: PruneConfig) -> list[dict[str, Any]]:
    """Store.diff on two configs: ratio rows, removed-block rows, then setting rows."""
    rows = [_row("ratio", u, a.ratios.get(u, 0.0), b.ratios.get(u, 0.0)) for u in sorted({*a.ratios, *b.ratios})]
    rows += [_row("remove_block", k, k in a.remove_blocks, k in b.remove_blocks)
             for k in sorted({*a.remove_blocks, *b.remove_blocks})]
    fa, fb = _settings(a), _settings(b)
    return rows + [_row("setting", k, fa[k], fb[k]) for k in fa]


def _row(kind: str, name: str, a: Any, b: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "a": a, "b": b, "changed": a != b}


def _settings(config: PruneConfig) -> dict[str, Any]:
    """Every config field but the ratios and blocks, nested ones flattened (schedule.kind, finetune.epochs)."""
    data = config.to_dict()
    for key in ("ratios", "remove_blocks", "version"):
        del data[key]
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def judged_by(points: list[Experiment]) -> TaskMetric:
    """The task measure runs of one model are compared on (core.metric_keys.headline of their pruned metrics): a
    language model's perplexity (lower is better), else test accuracy."""
    return next((PERPLEXITY_METRIC for e in points if task_value(e, PERPLEXITY_METRIC) is not None), TEST_ACCURACY)


def task_value(e: Experiment, metric: TaskMetric) -> float | None:
    """The pruned model's figure of `metric` (accuracy: the store's column), or None if not recorded."""
    if metric.key == TEST_ACCURACY.key:
        return e.accuracy
    pruned = (e.metrics or {}).get("pruned")
    value = pruned.get(metric.key) if isinstance(pruned, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pareto_front(points: list[Experiment], x: str, metric: TaskMetric = TEST_ACCURACY) -> list[Experiment]:
    """Points not dominated on (x lower, metric better: accuracy higher, perplexity lower), by x. Sorted by x then
    best first, a point is on the front iff it beats every earlier one, or it equals the last point kept."""
    sign = 1 if metric.higher_is_better else -1
    score = lambda e: sign * task_value(e, metric)  # noqa: E731  (higher is better)
    front: list[Experiment] = []
    for e in sorted(points, key=lambda e: (getattr(e, x), -score(e))):
        if not front or score(e) > score(front[-1]):
            front.append(e)
        elif (getattr(e, x), score(e)) == (getattr(front[-1], x), score(front[-1])):
            front.append(e)
    return front

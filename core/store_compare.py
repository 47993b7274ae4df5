"""Comparing recorded runs: how two configs differ, and the Pareto front of accuracy against a cost. Pure functions
on configs and records (core.store.Experiment), kept apart from the SQLite store that reads them."""

from __future__ import annotations

from typing import Any

from core.config import PruneConfig
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


def pareto_front(points: list[Experiment], x: str) -> list[Experiment]:
    """Points not dominated on (x lower, accuracy higher), by x. Sorted by x then accuracy descending, a point
    is on the front iff its accuracy beats every earlier one, or it equals the last point kept."""
    front: list[Experiment] = []
    for e in sorted(points, key=lambda e: (getattr(e, x), -e.accuracy)):
        if not front or e.accuracy > front[-1].accuracy:
            front.append(e)
        elif (getattr(e, x), e.accuracy) == (getattr(front[-1], x), front[-1].accuracy):
            front.append(e)
    return front

"""Heatmap data made readable on big models: channels binned to a bounded number of columns, rows averaged
per group (stage or block), and a figure height that follows the row count. Pure functions of arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.components.groups import group_key, group_names

MAX_COLS = 64  # channel columns drawn at most; wider rows are binned
GROUP_ROWS = 40  # above this many rows the heatmaps show group means by default
ROW_PX, BASE_PX = 22, 120  # figure height: a fixed row height (the page scrolls) plus axes and margins


@dataclass(frozen=True)
class Grid:
    """What a heatmap draws: z (rows x columns), row labels, column positions and the x-axis title;
    `spans` holds, per row and column, the first and last channel (1-based) and the row's width."""

    z: np.ndarray
    rows: list[str]
    x: list[float]
    x_title: str
    spans: np.ndarray | None = None  # rows x columns x 3, or None when every column is one channel
    counts: list[int] | None = None  # units per row when rows are groups


def heat_height(rows: int) -> int:
    """Figure height in pixels for `rows` rows: rows keep their height, the page scrolls."""
    return BASE_PX + ROW_PX * max(rows, 1)


def bin_bounds(width: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) channel of each of `bins` equal slices of a row of `width` channels;
    a row narrower than `bins` repeats channels, so every slice holds at least one."""
    edges = np.floor(np.arange(bins + 1) * width / bins).astype(int)
    starts = edges[:-1]
    return starts, np.maximum(edges[1:], starts + 1)


def bin_row(row: np.ndarray, bins: int) -> np.ndarray:
    """The mean of each of `bins` equal slices of row, by position."""
    starts, ends = bin_bounds(len(row), bins)
    sums = np.concatenate([[0.0], np.cumsum(row, dtype=float)])
    return (sums[ends] - sums[starts]) / (ends - starts)


def _ordered(scores: dict[str, np.ndarray], sort: bool) -> dict[str, np.ndarray]:
    return {k: np.sort(np.asarray(v, float))[::-1] if sort else np.asarray(v, float) for k, v in scores.items()}


def score_grid(scores: dict[str, np.ndarray], sort: bool = True, max_cols: int = MAX_COLS,
               grouped: bool = False) -> Grid:
    """Rows of channel scores as a heatmap grid: exact channels (rows padded with NaN) when every row fits
    in max_cols and rows are not grouped; otherwise every row binned into the same number of slices
    (x = share of the row's channels), and grouped rows averaged per group."""
    rows = _ordered(scores, sort)
    width = max((len(r) for r in rows.values()), default=0)
    what = "channel rank (sorted by score)" if sort else "channel position"
    if width <= max_cols and not grouped:
        z = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows.values()):
            z[i, : len(r)] = r
        return Grid(z, list(rows), list(range(width)), "channel (sorted by score)" if sort else "channel index")
    bins = max(min(max_cols, width), 1)
    binned = {k: bin_row(r, bins) if len(r) else np.full(bins, np.nan) for k, r in rows.items()}
    x = [round(100 * (j + 0.5) / bins, 2) for j in range(bins)]
    title = f"{what}, % of the row's channels ({bins} bins)"
    if grouped:
        groups = group_names(rows)
        z = np.array([np.nanmean([binned[n] for n in names], axis=0) for names in groups.values()])
        return Grid(z.reshape(len(groups), bins), list(groups), x, title,
                    counts=[len(n) for n in groups.values()])
    spans = np.array([_spans(len(r), bins) for r in rows.values()]).reshape(len(rows), bins, 3)
    return Grid(np.array(list(binned.values())).reshape(len(rows), bins), list(rows), x, title, spans)


def _spans(width: int, bins: int) -> np.ndarray:
    """Per slice: first and last channel (1-based) and the row's width."""
    starts, ends = bin_bounds(max(width, 1), bins)
    return np.stack([starts + 1, ends, np.full(bins, width)], axis=1)


def group_table(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A sensitivity table averaged per group: one row per (group, ratio) with the mean of `columns`, a
    `unit` column holding the group (so charts read it like a unit's table) and `units`, its size."""
    frame = table.assign(group=table["unit"].map(group_key))
    order = list(dict.fromkeys(frame["group"]))
    out = frame.groupby(["group", "ratio"], sort=False)[columns].mean().reset_index()
    sizes = frame.groupby("group")["unit"].nunique()
    out["units"] = out["group"].map(sizes)
    out["order"] = out["group"].map(order.index)
    return out.sort_values(["order", "ratio"]).drop(columns="order").rename(columns={"group": "unit"})

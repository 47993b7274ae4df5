"""A search's trials as the Search page shows them: a table (one row per trial of the grid, its figures as the
search's search.json holds them, which are its store record's) and the Pareto chart of accuracy against FLOPs,
every done trial coloured by strategy and the front joined by a line. Pure functions of the search record (a
dict as core.search_report writes it), so a poll redraws them from one small file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.search_report import SearchReport
from core.search_spec import SearchSpec

COLUMNS = ("target", "strategy", "seed", "status", "accuracy", "FLOPs", "size (bytes)", "message", "record")
CHART_TITLE = "Search trials: accuracy against FLOPs"
# a trial still pending, by the search's status as the page tells it (views.search)
NOT_RUN = {"running": "pending", "elsewhere": "pending", "cancelled": "cancelled", "interrupted": "not run"}


def table(record: dict[str, Any], search_status: str) -> pd.DataFrame:
    """One row per trial, in grid order. search_status (dashboard-side, see views.search): a trial still pending
    in a search that no longer runs reads as cancelled or not run."""
    rows = [{"target": t.get("target"), "strategy": t.get("strategy"), "seed": t.get("seed"),
             "status": _status(t.get("status"), search_status), "accuracy": t.get("accuracy"),
             "FLOPs": t.get("flops"), "size (bytes)": t.get("size_bytes"), "message": t.get("message") or "",
             "record": t.get("id")} for t in record["trials"]]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary(record: dict[str, Any]) -> str:
    """What the search asked, in one line: its grid, fine-tuning and executor."""
    spec = record["spec"]
    targets = ", ".join(f"{t:g}" for t in spec.get("targets", []))
    seeds = ", ".join(str(s) for s in spec.get("seeds", []))
    hw = ", hardware-aware widths" if spec.get("hardware_aware") else ""
    return (f"{spec.get('target')} reduction {targets} x {', '.join(spec.get('strategies', []))} x seeds {seeds}: "
            f"{len(record['trials'])} trials of {spec.get('method')} pruning ({spec.get('criterion')}){hw}, "
            f"{spec.get('finetune_epochs')} fine-tune epochs each, on the {record.get('executor')} executor")


def _status(trial: str | None, search_status: str) -> str:
    if trial == "pending":
        return NOT_RUN.get(search_status, "not run")
    return str(trial)


def chart(record: dict[str, Any]) -> go.Figure | None:
    """Accuracy (or a language model's perplexity) against FLOPs of the done trials, by strategy, with the Pareto
    front of those done so far (core.search_report's own front); None before any trial is done."""
    report = SearchReport(str(record.get("id")), Path("."), SearchSpec.from_dict(record["spec"]),
                          str(record.get("executor")), trials=record["trials"])
    metric = report.find_fronts()  # computed here (not read): the front fills in as trials land
    if metric is None:
        return None
    scale = 100 if metric.percent else 1
    fig = go.Figure()
    for strategy in report.spec.strategies:
        done = [t for t in report.done() if t["strategy"] == strategy and t.get("flops") is not None
                and t.get(metric.key) is not None]
        fig.add_trace(go.Scatter(x=[t["flops"] for t in done], y=[scale * t[metric.key] for t in done],
                                 mode="markers", name=strategy, text=[t["key"] for t in done], marker={"size": 11},
                                 hovertemplate="%{text}<br>%{x:,.4g} FLOPs<br>%{y:.4g}<extra></extra>"))
    front = [report.trial(k) for k in report.pareto.get("flops", [])]
    fig.add_trace(go.Scatter(x=[t["flops"] for t in front], y=[scale * t[metric.key] for t in front], mode="lines",
                             name="Pareto front", line={"color": "#111", "shape": "hv"}, hoverinfo="skip"))
    better = "higher" if metric.higher_is_better else "lower"
    fig.update_layout(title={"text": CHART_TITLE}, height=380, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      xaxis={"title": "FLOPs / example (lower is better)", "tickformat": "~s"},
                      yaxis={"title": f"{metric.label}{' (%)' if metric.percent else ''} ({better} is better)"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1})
    return fig

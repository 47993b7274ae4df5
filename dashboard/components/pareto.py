"""The Pareto chart of the Experiments page: accuracy against a cost, the front highlighted. A pure function of
its data (no Streamlit calls), so it is easy to test."""

from __future__ import annotations

import plotly.graph_objects as go

from core.metric_keys import TaskMetric
from core.store import Experiment
from core.store_compare import judged_by, task_value

AXES = {"flops": "FLOPs / image", "size_bytes": "fp32 size (bytes)", "latency_ms": "latency b1 (median, ms)"}
TICKS = {"flops": "~s", "size_bytes": "~s", "latency_ms": ".3~g"}  # 4.85M FLOPs, 19.4M bytes, 0.512 ms


def _y(metric: TaskMetric, value: float) -> float:
    """The plotted figure: accuracy in %, perplexity as it is."""
    return 100 * value if metric.percent else value


def _hover(metric: TaskMetric) -> str:
    return f"%{{x:,.4g}} · {metric.key} " + ("%{y:.2f}%" if metric.percent else "%{y:.4g}")


def _trace(points: list[Experiment], x: str, metric: TaskMetric, name: str, mode: str, marker: dict,
           **kw) -> go.Scatter:
    return go.Scatter(x=[getattr(e, x) for e in points], y=[_y(metric, task_value(e, metric)) for e in points],
                      mode=mode, name=name, customdata=[[e.id, e.method] for e in points],
                      hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>" + _hover(metric) + "<extra></extra>",
                      marker=marker, **kw)


def _baseline(points: list[Experiment], x: str, metric: TaskMetric) -> go.Scatter | None:
    """The unpruned model as the newest run recorded it beside its own measurement (its latency is re-timed with
    each run, so the run is named); None if no run recorded both figures."""
    for e in sorted(points, key=lambda e: e.created_at, reverse=True):
        base = (e.metrics or {}).get("baseline") or {}
        if base.get(x) is not None and base.get(metric.key) is not None:
            return go.Scatter(x=[base[x]], y=[_y(metric, base[metric.key])], mode="markers",
                              name=f"baseline (with {e.id})", marker={"color": "#111", "size": 14, "symbol": "star"},
                              hovertemplate="unpruned baseline<br>" + _hover(metric) + "<extra></extra>")
    return None


def pareto_chart(points: list[Experiment], front: list[Experiment], x: str) -> go.Figure:
    """Every point (done experiments with the model's task measure and an x) in grey, the front
    (core.store.pareto_front, sorted by x) in colour and joined by a line, the unpruned baseline as a star; hover
    gives id and method. x is one of AXES; y is test accuracy, or a language model's perplexity (lower is better)."""
    metric = judged_by(points)
    on_front = {e.id for e in front}
    others = [e for e in points if e.id not in on_front]
    fig = go.Figure([
        _trace(others, x, metric, "dominated", "markers", {"color": "#9aa5b1", "size": 9}),
        _trace(front, x, metric, "Pareto front", "lines+markers", {"color": "#2f80ed", "size": 12, "symbol": "diamond"},
               line={"color": "#2f80ed", "width": 2, "shape": "hv"}),
    ])
    if (base := _baseline(points, x, metric)) is not None:
        fig.add_trace(base)
    better = "higher" if metric.higher_is_better else "lower"
    yaxis = {"title": f"{metric.label} ({better} is better)"}
    yaxis |= {"ticksuffix": "%", "tickformat": ".1f"} if metric.percent else {"tickformat": ".3~g"}
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": f"{AXES[x]} (lower is better)", "tickformat": TICKS[x], "nticks": 8},
                      yaxis=yaxis, legend={"orientation": "h", "y": 1.12, "x": 0})
    return fig

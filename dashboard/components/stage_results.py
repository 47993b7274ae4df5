"""Results of a recipe (a config with stages, core.config.PruneConfig.then): every stage's measurements along the
way, from the run's trajectory (core.schedule marks each point with its stage), as a table and as a chart whose
vertical bands name each stage's method. Pure functions of the recorded data (no Streamlit calls)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core.config import PruneConfig
from core.metric_keys import TaskMetric

AFTER = {"pruned": "pruning", "fine-tuned": "fine-tuning"}  # trajectory phase -> the table's "after" column
BANDS = ("#e7f0fa", "#fbeee0")  # alternate stages' band colours (light: the points stay readable)


def stage_table(points: list[dict], config: PruneConfig, metric: TaskMetric) -> pd.DataFrame:
    """One row per stage and phase: the stage's last point after its pruning and, if it fine-tuned, after its
    fine-tuning (an iterative stage's last round: where that stage left the model) — params, FLOPs, non-zeros and
    the headline metric (metric.label; which way is better is the metric's)."""
    stages = config.stages()
    rows = []
    for k, stage in enumerate(stages, 1):
        for phase, after in AFTER.items():
            last = next((p for p in reversed(points) if p.get("stage", 1) == k and p["phase"] == phase), None)
            if last is not None:
                rows.append({"stage": k, "method": stage.method, "after": after, "params": last["params"],
                             "FLOPs": last["flops"], "non-zero params": last["nonzero_params"],
                             metric.label: last.get(metric.key)})
    return pd.DataFrame(rows, columns=["stage", "method", "after", "params", "FLOPs", "non-zero params",
                                       metric.label])


def stage_chart(points: list[dict], config: PruneConfig, metric: TaskMetric) -> go.Figure:
    """The headline metric (or, without one, the share of non-zero parameters left) at every point in order, one
    vertical band per stage labelled with its number and method."""
    base = points[0]
    measured = all(p.get(metric.key) is not None for p in points)
    scale = 100 if metric.percent else 1

    def y(p: dict) -> float:
        return scale * p[metric.key] if measured else 100 * p["nonzero_params"] / base["nonzero_params"]

    x = list(range(len(points)))
    fig = go.Figure(go.Scatter(
        x=x, y=[y(p) for p in points], mode="lines+markers", showlegend=False, marker={"size": 9},
        customdata=[[p.get("stage", 1), p["phase"], 100 * p["nonzero_params"] / base["nonzero_params"],
                     100 * p["flops"] / base["flops"]] for p in points],
        hovertemplate="stage %{customdata[0]} · %{customdata[1]}<br>non-zero params %{customdata[2]:.1f}% · "
                      "FLOPs %{customdata[3]:.1f}% of baseline<br>%{y:.4g}<extra></extra>"))
    for k, stage in enumerate(config.stages(), 1):
        at = [i for i, p in enumerate(points) if p.get("stage", 1) == k]
        if at:
            fig.add_vrect(x0=at[0] - 0.5, x1=at[-1] + 0.5, fillcolor=BANDS[(k - 1) % len(BANDS)], line_width=0,
                          layer="below", annotation_text=f"stage {k}: {stage.method}", annotation_position="top left")
    label = (metric.label + (" %" if metric.percent else "")) if measured else "non-zero params (% of baseline)"
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10}, yaxis_title=label,
                      xaxis={"title": "measurement, in order (baseline, then after each pruning and fine-tuning)",
                             "tickvals": x, "ticktext": [p["phase"] for p in points]})
    return fig

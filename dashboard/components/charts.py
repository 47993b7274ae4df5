"""Plotly figures. Pure functions of data: no Streamlit calls, so they are easy to test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.metric_keys import PERPLEXITY_METRIC, ModelMetrics, latency_key, sweep_metric
from dashboard.components.heat import MAX_COLS, group_table, heat_height, score_grid

# (metric key, label, unit) of the sizes, in the order the comparison charts show them; latencies follow
SIZES = [
    ("size_bytes", "fp32 size", "bytes"),
    ("onnx_bytes", "ONNX file", "bytes"),
    ("params", "parameters", ""),
    ("nonzero_params", "non-zero params", ""),
    ("flops", "FLOPs", "per image"),
]


def compared(base: dict, pruned: dict) -> list[tuple[str, str, str]]:
    """(metric key, label, unit) of each figure both models have, as the comparison charts show them: sizes,
    then the median latency at every batch the run timed, onnxruntime before eager torch."""
    batches = ModelMetrics.from_dict(pruned).latency_batches
    latency = [(latency_key(b, "median", runtime), f"{label} b{b} (median)", "ms")
               for runtime, label in (("onnxruntime", "latency"), ("torch", "eager torch")) for b in batches]
    return [row for row in SIZES + latency if row[0] in base and row[0] in pruned]


def importance_heatmap(scores: dict[str, np.ndarray], sort: bool = True, grouped: bool = False,
                       max_cols: int = MAX_COLS) -> go.Figure:
    """Layers x channels heatmap of importance scores (each row scaled to max 1).

    Rows are padded with gaps to the widest layer; sorting puts each row's strongest channel first,
    which makes it easy to see how much of a layer carries little weight. Rows wider than max_cols are
    binned (each column the mean of an equal share of the row's channels); grouped: one row per stage or
    block, the mean of its units' binned rows. The height follows the row count.
    """
    grid = score_grid(scores, sort, max_cols, grouped)
    heat: dict = {"z": grid.z, "x": grid.x, "y": grid.rows, "colorscale": "Viridis", "zmin": 0, "zmax": 1,
                  "colorbar": {"title": "score / max"}}
    if grid.counts is not None:
        heat["customdata"] = np.array([[n] * len(grid.x) for n in grid.counts])
        heat["hovertemplate"] = "%{y} (mean of %{customdata} units)<br>%{x:.0f}% of channels<br>score %{z:.3f}"
    elif grid.spans is not None:
        heat["customdata"] = grid.spans
        heat["hovertemplate"] = ("%{y}<br>channels %{customdata[0]}–%{customdata[1]} of %{customdata[2]}"
                                 + (" (by rank)" if sort else "") + "<br>mean score %{z:.3f}")
    else:
        heat["hovertemplate"] = "%{y}<br>channel " + ("rank" if sort else "#") + " %{x}<br>score %{z:.3f}"
    heat["hovertemplate"] += "<extra></extra>"
    fig = go.Figure(go.Heatmap(**heat))
    fig.update_layout(height=heat_height(len(grid.rows)), margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      xaxis_title=grid.x_title, yaxis={"autorange": "reversed"}, clickmode="event+select")
    return fig


def comparison_bars(base: dict, pruned: dict) -> go.Figure:
    """Each cost metric of the pruned model as a percentage of the baseline's (baseline = 100%)."""
    keys = [(k, label, unit) for k, label, unit in compared(base, pruned) if base[k]]
    labels = [label for _, label, _ in keys]
    pct = [100 * pruned[k] / base[k] for k, _, _ in keys]
    hover = [f"{label}: {pruned[k]:,.4g} vs {base[k]:,.4g} {unit}" for k, label, unit in keys]
    fig = go.Figure([
        go.Bar(name="baseline", x=labels, y=[100] * len(keys), marker_color="#9aa5b1", hovertext=hover,
               hoverinfo="text"),
        go.Bar(name="pruned", x=labels, y=pct, marker_color="#2f80ed", hovertext=hover, hoverinfo="text",
               text=[f"{p:.0f}%" for p in pct], textposition="outside"),
    ])
    fig.update_layout(barmode="group", yaxis_title="% of baseline (lower is better)", height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.12, "x": 0})
    return fig


def accuracy_bars(base: dict, pruned: dict) -> go.Figure:
    """Test accuracy before and after, on an axis from 0 to 100% so a drop looks as large as it is (a zoomed
    axis made a 0.4-point drop look like a tenth of the bar); the exact figures are written on the bars. An
    empty chart saying so when the model has no data."""
    if base.get(PERPLEXITY_METRIC.key) is not None and pruned.get(PERPLEXITY_METRIC.key) is not None:
        return _perplexity_bars(base, pruned)
    if base.get("accuracy") is None or pruned.get("accuracy") is None:
        fig = go.Figure()
        fig.add_annotation(text="accuracy n/a<br>(no data set)", showarrow=False, font={"size": 16})
        fig.update_layout(height=380, xaxis={"visible": False}, yaxis={"visible": False})
        return fig
    vals = [100 * base["accuracy"], 100 * pruned["accuracy"]]
    fig = go.Figure(go.Bar(x=["baseline", "pruned"], y=vals, marker_color=["#9aa5b1", "#2f80ed"],
                           text=[f"{v:.2f}%" for v in vals], textposition="outside"))
    fig.update_layout(yaxis={"range": [0, 110], "title": "test accuracy % (axis from 0)"}, height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def _perplexity_bars(base: dict, pruned: dict) -> go.Figure:
    """A language model's validation perplexity before and after (lower is better), on an axis from 0."""
    key = PERPLEXITY_METRIC.key
    vals = [base[key], pruned[key]]
    fig = go.Figure(go.Bar(x=["baseline", "pruned"], y=vals, marker_color=["#9aa5b1", "#2f80ed"],
                           text=[PERPLEXITY_METRIC.show(v) for v in vals], textposition="outside"))
    fig.update_layout(yaxis={"range": [0, 1.15 * max(vals)], "title": "validation perplexity (lower is better)"},
                      height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def estimate_bars(base: dict, est: dict) -> go.Figure:
    """Estimated params / non-zero params / FLOPs / size as % of baseline, as the sliders move."""
    keys = [("params", "params"), ("nonzero_params", "non-zero params"), ("flops", "dense FLOPs"),
            ("sparse_flops", "sparse-effective FLOPs"), ("size_bytes", "fp32 size")]
    pct = [100 * est[k] / base[k] for k, _ in keys]
    fig = go.Figure(go.Bar(x=[label for _, label in keys], y=pct, marker_color="#f2994a",
                           text=[f"{p:.0f}%" for p in pct], textposition="outside",
                           hovertext=[f"{est[k]:,} of {base[k]:,}" for k, _ in keys], hoverinfo="text"))
    fig.update_layout(yaxis={"range": [0, 115], "title": "% of baseline (estimate)"}, height=300,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


HEAT_TITLES = {"accuracy_drop": "accuracy drop (points)", "loss_increase": "loss increase",
               PERPLEXITY_METRIC.change_name: PERPLEXITY_METRIC.change_name.replace("_", " ")}


def sensitivity_heatmap(table, column: str = "accuracy_drop", grouped: bool = False) -> go.Figure:
    """Units x ratios heatmap of the sweep: accuracy drop (points), loss increase or a language model's perplexity
    increase (worse is redder either way); hover shows the measure itself (accuracy, or perplexity).
    grouped: one row per stage or block, the mean over its units. The height follows the row count."""
    measure = sweep_metric(table.columns).key  # what the hover shows beside the change
    if grouped:
        table = group_table(table, [column, measure])
    pivot = table.pivot(index="unit", columns="ratio", values=column).reindex(table["unit"].unique())
    acc = table.pivot(index="unit", columns="ratio", values=measure).reindex(pivot.index)
    scale = 100 if column == "accuracy_drop" else 1
    title = HEAT_TITLES[column]
    mean = "mean " if grouped else ""
    z = pivot.to_numpy() * scale
    zmax = _clip_at(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{r:g}" for r in pivot.columns], y=list(pivot.index), customdata=acc.to_numpy(), colorscale="Reds",
        zmin=0, zmax=zmax, colorbar={"title": title if zmax is None else f"{title}<br>(colours clipped at {zmax:.3g})"},
        hovertemplate="%{y}<br>ratio %{x}<br>" + mean + title + " %{z:.3g}<br>" + mean
                      + measure + " %{customdata:.4f}<extra></extra>",
    ))
    fig.update_layout(height=heat_height(len(pivot.index)) + 20, margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      xaxis_title="ratio removed", yaxis={"autorange": "reversed"}, clickmode="event+select")
    return fig


def _clip_at(z: np.ndarray) -> float | None:
    """A colour-scale top for a sweep heatmap, or None for the full range. A few cells (the first conv at high
    ratios) can cost 10x what every other layer does; scaled to them, everything else is one pale colour. So the
    scale stops at the 90th percentile when the largest value is more than twice that (hover keeps true values)."""
    values = z[np.isfinite(z) & (z > 0)]
    if values.size < 10:
        return None
    top = float(np.percentile(values, 90))
    return top if top > 0 and values.max() > 2 * top else None


def unit_cost_bars(costs) -> go.Figure:
    """Per unit: % of params, FLOPs and measured latency in the layers it cuts."""
    fig = go.Figure([
        go.Bar(name=label, x=costs["unit"], y=costs[col],
               hovertemplate="%{x}<br>" + label + " %{y:.1f}%<extra></extra>")
        for col, label in (("params %", "params"), ("FLOPs %", "FLOPs"), ("latency %", "measured latency"))
    ])
    fig.update_layout(barmode="group", yaxis_title="% of the model", height=340,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": 1.12, "x": 0})
    return fig


def width_chart(rows: list[dict]) -> go.Figure:
    """Every layer's output width before and after pruning (always available: no viewer needed) and, for
    models with attention, a second panel with each attention module's heads and head width
    (core.graph.layer_widths rows)."""
    channels = [r for r in rows if r.get("kind", "channels") == "channels"]
    attention = [r for r in rows if r.get("kind", "channels") != "channels"]
    panels = [(channels, "output channels")] + ([(attention, "heads / head dim")] if attention else [])
    fig = make_subplots(rows=len(panels), cols=1, vertical_spacing=0.3 if attention else 0.1)
    for i, (shown, title) in enumerate(panels, start=1):
        layers = [r["layer"] for r in shown]
        fig.add_trace(go.Bar(name="before", x=layers, y=[r["before"] for r in shown], marker_color="#9aa5b1",
                             showlegend=i == 1, legendgroup="before"), row=i, col=1)
        fig.add_trace(go.Bar(name="after", x=layers, y=[r["after"] for r in shown], marker_color="#2f80ed",
                             text=[r["after"] for r in shown], textposition="outside", showlegend=i == 1,
                             legendgroup="after"), row=i, col=1)
        fig.update_yaxes(title_text=title, row=i, col=1)
        fig.update_xaxes(tickangle=-45, row=i, col=1)
    fig.update_layout(barmode="group", height=360 * len(panels), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.12 if not attention else 1.06, "x": 0})
    return fig


PHASES = {"baseline": ("#9aa5b1", "diamond"), "pruned": ("#f2994a", "x"), "fine-tuned": ("#2f80ed", "circle")}


def trajectory_chart(points: list[dict], mask: bool) -> go.Figure:
    """A schedule's measurements in order: test accuracy against the share of the baseline's non-zero
    parameters (mask methods) or parameters (structural methods), one marker per point, coloured by phase
    (baseline, pruned, fine-tuned); hover gives the step, the share of the final ratio and FLOPs.
    Without accuracy (no data set) the y axis shows the FLOPs share instead."""
    base = points[0]
    size = "nonzero_params" if mask else "params"
    has_acc = all(p.get("accuracy") is not None for p in points)

    def x(p: dict) -> float:
        return 100 * p[size] / base[size]

    def y(p: dict) -> float:
        return 100 * p["accuracy"] if has_acc else 100 * p["flops"] / base["flops"]

    size_label, y_label = "non-zero params" if mask else "params", "test accuracy" if has_acc else "FLOPs"
    fig = go.Figure(go.Scatter(x=[x(p) for p in points], y=[y(p) for p in points], mode="lines",
                               line={"color": "#d0d5db", "width": 1}, hoverinfo="skip", showlegend=False))
    for phase, (color, symbol) in PHASES.items():
        shown = [p for p in points if p["phase"] == phase]
        if not shown:
            continue
        hover = (f"step %{{customdata[0]}} · {phase}<br>%{{customdata[1]:.0f}}% of the final ratio<br>"
                 f"{size_label} %{{x:.1f}}% · FLOPs %{{customdata[2]:.1f}}% of baseline<br>"
                 f"{y_label} %{{y:.2f}}%<extra></extra>")
        fig.add_trace(go.Scatter(
            x=[x(p) for p in shown], y=[y(p) for p in shown], mode="markers", name=phase, hovertemplate=hover,
            marker={"color": color, "symbol": symbol, "size": 11},
            customdata=[[p["step"], 100 * p["fraction"], 100 * p["flops"] / base["flops"]] for p in shown],
        ))
    fig.update_layout(
        height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": 1.12, "x": 0},
        xaxis={"title": f"{size_label} (% of baseline)", "autorange": "reversed"},
        yaxis_title="test accuracy %" if has_acc else "FLOPs (% of baseline)",
    )
    return fig


def head_heatmap(frame: pd.DataFrame) -> go.Figure:
    """Attention modules x heads importance (core.importance.heads.scores_frame): low = pruned first."""
    fig = go.Figure(go.Heatmap(
        z=frame.to_numpy(), x=[f"head {h}" for h in frame.columns], y=list(frame.index), colorscale="Viridis",
        colorbar={"title": "score"}, hovertemplate="%{y}<br>%{x}<br>score %{z:.4g}<extra></extra>",
    ))
    fig.update_layout(height=120 + 30 * len(frame.index), margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      yaxis={"autorange": "reversed"})
    return fig

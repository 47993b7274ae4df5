"""Results of a recipe (a config with stages, core.config.PruneConfig.then): every stage's measurements along the
way, from the run's trajectory (core.schedule marks each point with its stage), as a table and as a chart whose
vertical bands name each stage's method; and the int8 quantisation that may follow the last stage (metrics.json's
"int8", core.experiment): the stage table's last row, or, for a single-method run, float32 vs int8. Pure functions
of the recorded data (no Streamlit calls)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core.config import PruneConfig
from core.metric_keys import ACCURACY, ONNX_BYTES, TEST_ACCURACY, TaskMetric, latency_key, task_metrics

AFTER = {"pruned": "pruning", "fine-tuned": "fine-tuning"}  # trajectory phase -> the table's "after" column
BANDS = ("#e7f0fa", "#fbeee0")  # alternate stages' band colours (light: the points stay readable)
INT8_ROW = "int8 (onnxruntime)"  # the method cell of the quantisation that follows the last stage
ONNX_COLUMN, LATENCY_COLUMN = "ONNX bytes", "latency b1 (ms)"  # onnxruntime median at batch 1
COUNTS = ("stage", "params", "FLOPs", "non-zero params", ONNX_COLUMN)  # whole numbers; a cell not measured is empty


def stage_table(points: list[dict], config: PruneConfig, metric: TaskMetric, int8: dict | None = None,
                pruned: dict | None = None, accuracy: TaskMetric = TEST_ACCURACY) -> pd.DataFrame:
    """One row per stage and phase: the stage's last point after its pruning and, if it fine-tuned, after its
    fine-tuning (an iterative stage's last round: where that stage left the model) — params, FLOPs, non-zeros and
    the headline metric (metric.label; which way is better is the metric's). With int8 (metrics.json's "int8": the
    quantisation after the last stage), a last row of its ONNX bytes, accuracy and batch-1 latency, and those of the
    float model the last stage left (pruned: metrics.json's "pruned") on that stage's last row; every other cell of
    those columns is empty: nothing was exported or timed there. accuracy: the label of a model's accuracy when its
    headline is another measure (a language model's next-token accuracy)."""
    rows = []
    for k, stage in enumerate(config.stages(), 1):
        for phase, after in AFTER.items():
            last = next((p for p in reversed(points) if p.get("stage", 1) == k and p["phase"] == phase), None)
            if last is not None:
                rows.append({"stage": k, "method": stage.method, "after": after, "params": last["params"],
                             "FLOPs": last["flops"], "non-zero params": last["nonzero_params"],
                             metric.label: last.get(metric.key)})
    columns = ["stage", "method", "after", "params", "FLOPs", "non-zero params", metric.label]
    if int8 is not None:
        columns += _int8_rows(rows, int8, pruned or {}, metric, accuracy)
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: "Int64" for c in COUNTS if c in columns})


def _int8_rows(rows: list[dict], int8: dict, pruned: dict, metric: TaskMetric, accuracy: TaskMetric) -> list[str]:
    """Appends the int8 row to rows (and the float figures to the last stage's last row); returns the columns they
    add. The int8 accuracy goes under the headline when that is accuracy, else under its own column."""
    acc_label = metric.label if metric.key == ACCURACY else accuracy.label
    if rows:
        rows[-1] |= {ONNX_COLUMN: pruned.get(ONNX_BYTES) or None, LATENCY_COLUMN: pruned.get(latency_key(1))}
        if acc_label != metric.label:
            rows[-1][acc_label] = pruned.get(ACCURACY)
    rows.append({"method": INT8_ROW, "after": "quantisation", acc_label: int8.get(ACCURACY),
                 ONNX_COLUMN: int8.get(ONNX_BYTES), LATENCY_COLUMN: int8.get(latency_key(1))})
    return [ONNX_COLUMN, LATENCY_COLUMN] + ([acc_label] if acc_label != metric.label else [])


def accuracy_metric(metrics: dict) -> TaskMetric:
    """What a model's "accuracy" measures (a classifier's test accuracy, a language model's next-token accuracy):
    the label the int8 figure, recorded under that key, is shown with."""
    return next((m for m in task_metrics(metrics) if m.key == ACCURACY), TEST_ACCURACY)


def int8_table(pruned: dict, int8: dict, accuracy: TaskMetric = TEST_ACCURACY) -> pd.DataFrame:
    """float32 (the pruned model's ONNX) vs int8 (its quantised file), as measured: ONNX size, accuracy (a row only
    where one was measured) and onnxruntime median latency at every batch both were timed at."""
    rows = [("ONNX size (bytes)", pruned.get(ONNX_BYTES), int8.get(ONNX_BYTES))]
    if pruned.get(ACCURACY) is not None or int8.get(ACCURACY) is not None:
        rows.append((accuracy.label, pruned.get(ACCURACY), int8.get(ACCURACY)))
    for batch in int8.get("latency_batches") or [1]:
        key = latency_key(batch)
        if int8.get(key) is not None:
            rows.append((f"latency b{batch} (ms)", pruned.get(key), int8[key]))
    return pd.DataFrame([(m, f, i, i / f if f and i is not None else None) for m, f, i in rows],
                        columns=["metric", "float32", "int8", "int8 / float32"])


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

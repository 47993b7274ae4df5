"""Number formatting and metric rows shared by the pages."""

from __future__ import annotations

import streamlit as st

from core.metric_keys import ACCURACY, FIDELITY_METRIC, PERPLEXITY_METRIC, ModelMetrics, latency_key
from dashboard.components.text import md


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (three significant digits, SI prefixes), for params, FLOPs and bytes."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}"
    return f"{n:.0f} {unit}".strip()


def metric_row(m: dict, base: dict | None = None) -> None:
    """Params, size, FLOPs, latency and accuracy as st.metric tiles, with change vs base if given."""
    def delta(key: str) -> str | None:
        if not base or not base.get(key):
            return None
        return f"{100 * (m[key] / base[key] - 1):+.1f}%"

    cols = st.columns(6)
    cols[0].metric("Parameters", human(m["params"]), delta("params"), delta_color="inverse")
    cols[1].metric("fp32 size", human(m["size_bytes"], "B"), delta("size_bytes"), delta_color="inverse")
    cols[2].metric("FLOPs / image", human(m["flops"]), delta("flops"), delta_color="inverse")
    view = ModelMetrics.from_dict(m)
    for col, batch in zip(cols[3:5], view.latency_batches, strict=False):
        key, torch_ms = latency_key(batch), view.latency_ms(batch, runtime="torch")
        if key not in m:  # no ONNX file to time (the export failed): torch's figure only
            col.metric(f"Latency b{batch} (torch)", _ms(torch_ms),
                       help="No onnxruntime figure: " + md(m.get("onnx_error", "not measured")))
            continue
        col.metric(f"Latency b{batch} (median)", f"{m[key]:.3g} ms", delta(key), delta_color="inverse",
                   help=f"onnxruntime; p90 {_ms(view.latency_ms(batch, 'p90'))}. Eager torch: {_ms(torch_ms)}.")
    if m.get(PERPLEXITY_METRIC.key) is not None:
        _perplexity_tile(cols[5], m, base)
        return
    if m.get(ACCURACY) is None:
        if FIDELITY_METRIC.key in m:
            cols[5].metric("Embedding fidelity", f"{m['fidelity']:.4f}",
                           help="Mean cosine similarity of sentence embeddings to the unpruned model's.")
            return
        cols[5].metric("Test accuracy", "n/a", help="This model has no data set (random weights): not measured.")
        return
    acc_delta = None if not base else f"{100 * (m['accuracy'] - base['accuracy']):+.2f} pts"
    cols[5].metric("Test accuracy", f"{100 * m['accuracy']:.2f}%", acc_delta)


def _perplexity_tile(col, m: dict, base: dict | None) -> None:
    """A language model's headline: validation perplexity (lower is better), next-token accuracy in its help."""
    key = PERPLEXITY_METRIC.key
    change = None if not base or base.get(key) is None else f"{m[key] - base[key]:+.3f}"
    col.metric("Validation perplexity", PERPLEXITY_METRIC.show(m[key]), change, delta_color="inverse",
               help=f"exp(mean next-token cross-entropy) on the validation text; lower is better. Next-token "
                    f"accuracy {100 * m[ACCURACY]:.2f}%.")


def _ms(value: float | None) -> str:
    """A latency to three significant digits, or "n/a" when it was not measured."""
    return "n/a" if value is None else f"{value:.3g} ms"

"""Number formatting and metric rows shared by the pages."""

from __future__ import annotations

import streamlit as st


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
    cols[3].metric("Latency b1 (median)", f"{m['latency_ms']:.3g} ms", delta("latency_ms"), delta_color="inverse",
                   help=f"p90 {m['latency_p90_ms']:.3g} ms")
    cols[4].metric("Latency b32 (median)", f"{m['latency_ms_batch32']:.3g} ms", delta("latency_ms_batch32"),
                   delta_color="inverse", help=f"p90 {m['latency_p90_ms_batch32']:.3g} ms")
    acc_delta = None if not base else f"{100 * (m['accuracy'] - base['accuracy']):+.2f} pts"
    cols[5].metric("Test accuracy", f"{100 * m['accuracy']:.2f}%", acc_delta)

"""Export page: download the config, the pruned ONNX model and the measurements of a saved run."""

from __future__ import annotations

import streamlit as st

from dashboard.views.results import pick_run


def render(name: str) -> None:
    run = pick_run(name, key="export-run")
    if run is None:
        return
    c1, c2, c3 = st.columns(3)
    c1.download_button("config.json", run.config.to_json(), file_name="config.json", mime="application/json",
                       key="dl-config", width="stretch")
    c2.download_button("model.onnx", run.onnx_bytes(), file_name="model.onnx", mime="application/octet-stream",
                       key="dl-onnx", width="stretch")
    c3.download_button("metrics.json", (run.path / "metrics.json").read_bytes(), file_name="metrics.json",
                       mime="application/json", key="dl-metrics", width="stretch")
    st.markdown("Replay this configuration without a browser (same pruned model, same measurements):")
    st.code("prunelab apply config.json --out pruned/", language="bash")
    st.markdown(f"Saved in `{run.path}`")
    st.json(run.config.to_dict(), expanded=False)

"""The Netron graph of a run's model.onnx embedded in the page (the server itself: dashboard.netron_server, one
per file version kept by dashboard.cache). Netron's code refuses to run 180 days after its build; past that date
the viewer is not offered and the width chart stands alone."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import cache
from dashboard.netron_server import MAX_AGE_DAYS, netron_age_days


def embed(model_path: Path, height: int = 700) -> None:
    """Show the model in Netron inside the page (or say why not)."""
    age = netron_age_days()
    if age is not None and age > MAX_AGE_DAYS:
        st.info(f"The installed Netron was built {age:.0f} days ago and refuses to run after {MAX_AGE_DAYS}; "
                "update it (pip install -U netron) to see the graph. The width chart above needs nothing.")
        return
    port = cache.netron_port(str(model_path), model_path.stat().st_mtime_ns)
    st.iframe(f"http://127.0.0.1:{port}/", height=height, alt="Netron graph of this run's model.onnx")
    st.caption(f"Netron serving this run's model.onnx on 127.0.0.1:{port}; nothing leaves this machine.")

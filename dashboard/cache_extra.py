"""Streamlit caches added beside dashboard/cache.py (same rules: shared by all sessions, read-only)."""

from __future__ import annotations

import streamlit as st

from core.strategy import detect_family
from dashboard import cache


@st.cache_data(show_spinner=False)
def model_family(name: str) -> str:
    """cnn, transformer or mlp (core.strategy.detect_family) of the model called `name`."""
    return detect_family(cache.spec(name).model)

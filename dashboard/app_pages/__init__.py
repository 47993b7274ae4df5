"""One script per dashboard page, registered by dashboard/app.py with `st.navigation` (each at its own URL,
/model, /tune, ...): only the page shown runs on a rerun. A page draws its view (dashboard/views/*) for the
model the sidebar chose; a user error (PruneLabError) becomes one line on the page instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.errors import PruneLabError
from dashboard import state
from dashboard.components.text import md


def draw(render: Callable[[str], None]) -> None:
    """Call render(model) for the model the sidebar chose; show a PruneLabError as one line."""
    try:
        render(state.shown_model())
    except PruneLabError as e:
        st.error(md(e))

"""The controls shared by the Model and Sensitivity heatmaps: group means or full detail on big models, and
what a click on a row does (a unit: first among the Tune sliders; a group: the Tune search shows it)."""

from __future__ import annotations

import streamlit as st

from dashboard import state
from dashboard.components.heat import GROUP_ROWS
from dashboard.components.text import md


def grouped_view(rows: int, key: str) -> bool:
    """For more than GROUP_ROWS rows, a toggle for full detail (off: one row per stage or block); True when
    the heatmap should show group means."""
    if rows <= GROUP_ROWS:
        return False
    detail = st.toggle(f"Full detail ({rows} rows)", value=False, key=key,
                       help="Off: one row per stage or block (the mean of its units), to see where the weight "
                            "sits at a glance. On: every row.")
    return not detail


def handle_pick(event, grouped: bool, source: str) -> None:
    """A clicked row in chart `source`: a unit becomes the Tune page's focused slider; a group (grouped view)
    becomes the Tune page's search, once per click (so the search can then be edited)."""
    points = (event.get("selection") or {}).get("points") if event else None
    if not points:
        state.pick_group(source, None)
        return
    row = points[0]["y"]
    if not grouped:
        state.set_focus(row)
        st.success(f"{md(row)} is now first among the sliders on the Tune page.")
        return
    state.pick_group(source, row)
    st.success(f"The Tune page's search now shows the {md(row)} group's sliders.")

"""The dashboard's session state behind typed accessors: which key holds what, and which of it the URL carries.

Pages are separate scripts (`st.navigation`), so what they share lives in the session: the model the pages
show and the run Results and Export show. Both are mirrored in the URL (`?model=...&run=...`) so a reload, a
new tab or a shared link opens the same model and run. Every read and write of these keys goes through the
functions here; a later step moves the dashboard's other session keys into this module the same way (one
constant naming the key, one reader, one writer).
"""

from __future__ import annotations

import streamlit as st

MODEL_SHOWN = "model-shown"  # session key: the model the pages show (components.own_model writes it too)
SELECTED_RUN = "selected_run"  # session key: the run id Results and Export show first
MODEL_PARAM, RUN_PARAM = "model", "run"  # query parameters mirroring the two keys


def initial_model(default: str) -> str:
    """The model a new session starts on: the URL's `?model=`, else `default`. The sidebar offers it only
    if it is a model it lists (a user model's handle from another session is not)."""
    return st.query_params.get(MODEL_PARAM) or default


def shown_model() -> str:
    """The model the pages draw (set by app.py each run before the page runs)."""
    return st.session_state[MODEL_SHOWN]


def show_model(name: str) -> None:
    st.session_state[MODEL_SHOWN] = name


def selected_run() -> str | None:
    """The run id the session last selected or made, if any."""
    return st.session_state.get(SELECTED_RUN)


def select_run(run_id: str) -> None:
    st.session_state[SELECTED_RUN] = run_id


def restore_run() -> None:
    """A new session (a reload, a link) takes its selected run from the URL's `?run=`."""
    if SELECTED_RUN not in st.session_state and (run_id := st.query_params.get(RUN_PARAM)):
        select_run(run_id)


def sync_url() -> None:
    """Write the shown model and the selected run into the URL (only what changed: each write is a message
    to the browser)."""
    wanted = {MODEL_PARAM: st.session_state.get(MODEL_SHOWN), RUN_PARAM: selected_run()}
    for param, value in wanted.items():
        if value is None:
            st.query_params.pop(param, None)
        elif st.query_params.get(param) != value:
            st.query_params[param] = value

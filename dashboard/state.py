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

# Widget keys whose values outlive their page. Streamlit forgets a widget's value on a run that does not draw
# it (every run of another page), but these settings are read from elsewhere (Tune's predicted accuracy reads
# the Sensitivity page's sweep settings) or expected back when the user returns (Tune's method, training,
# solver; the Model page's heatmap choices). Only value widgets: a button's or an uploader's key may not be
# written. Ratio sliders and their search keep theirs with persist_state="session" where they are drawn.
KEPT = frozenset({
    "sens-granularity", "sens-criterion", "sens-grid", "sens-eval", "sens-calib", "sens-seed", "sens-metric",
    "method", "criterion", "scope", "hw-aware", "block-rows", "block-cols",
    "epochs", "lr", "seed", "distill", "distill-alpha", "distill-temperature", "rewind",
    "schedule", "schedule-curve", "schedule-steps", "schedule-every",
    "solver-target", "solver-value", "solver-strategy", "solver-min", "solver-max", "solver-hw",
    "strategy-bottleneck", "strategy-loss", "strategy-hardware",
    "heat-rows", "heat-criterion", "heat-sort", "head-criterion",
})
KEPT_PREFIXES = ("nm-layers|", "drop|", "strategy-family|")  # per-model keys: N:M layers, dropped blocks


USER_MODELS = "user-models"  # session key: handle -> load arguments (dashboard.cache.UserModel) of own models


def user_models() -> dict:
    """The user's own models this session loaded, by handle: a session loads another's model only by loading it
    itself (nothing about them is kept per server process)."""
    return st.session_state.setdefault(USER_MODELS, {})


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


def keep_settings() -> None:
    """Carry the KEPT widget values into this run (call before any widget is drawn): a value written through
    session state is kept until its widget takes it, whichever page runs meanwhile."""
    for key in [k for k in st.session_state if k in KEPT or k.startswith(KEPT_PREFIXES)]:
        st.session_state[key] = st.session_state[key]


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

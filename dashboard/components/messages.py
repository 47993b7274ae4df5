"""Messages a callback leaves for the page (the solver's verdict, a config loaded into Tune, a deleted run), kept
per model: each is stored under its key and the model it is about, so switching the sidebar to another model
never shows it there. Shown as plain text (it quotes file names, unit names and errors)."""

from __future__ import annotations

import streamlit as st

from dashboard.components.text import md


def key_for(key: str, model: str) -> str:
    """The session key of message `key` about model `model`."""
    return f"{key}|{model}"


def say(key: str, model: str, kind: str, text: str) -> None:
    """Leave a message (kind: success, info, warning or error) about model `model`."""
    st.session_state[key_for(key, model)] = (kind, text)


def clear(key: str, model: str) -> None:
    st.session_state.pop(key_for(key, model), None)


def show(key: str, model: str) -> None:
    """Draw the message left under key about model `model`, if any."""
    kind, text = st.session_state.get(key_for(key, model), (None, None))
    if kind:
        getattr(st, kind)(md(text))

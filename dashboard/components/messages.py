"""Messages a callback leaves for the page (the solver's verdict, a config loaded into Tune, a deleted run), kept
per model: each is stored (dashboard.state.say) under its key and the model it is about, so switching the sidebar
to another model never shows it there. Shown as plain text (it quotes file names, unit names and errors)."""

from __future__ import annotations

import streamlit as st

from dashboard import state
from dashboard.components.text import md


def say(key: str, model: str, kind: str, text: str) -> None:
    """Leave a message (kind: success, info, warning or error) about model `model`."""
    state.say(key, model, kind, text)


def clear(key: str, model: str) -> None:
    state.unsay(key, model)


def show(key: str, model: str) -> None:
    """Draw the message left under key about model `model`, if any."""
    kind, text = state.message(key, model)
    if kind:
        getattr(st, kind)(md(text))

"""Locked units: one notion of locking for the Tune page, kept under the budget solver's "Locked" key.

For the methods the solver handles (Method.solved, core.methods), the solver panel's multiselect (key LOCK_KEY,
components.solver) holds the locked units; locked sliders are drawn disabled, and the "All layers" slider,
bulk set, the strategy helper and the solver leave them as they are. Big models also get a "Locked units"
multiselect beside their sliders: for solver methods a mirror of LOCK_KEY that writes LOCK_KEY when it
changes (and keeps the locks while another method is shown: `restore` gives them back to the solver's
widget, whose value Streamlit drops while it is not drawn); for the other methods, their own list.
"""

from __future__ import annotations

import streamlit as st

from core import methods

LOCK_KEY = "solver-locked"  # the key of the solver panel's "Locked" multiselect


def mirror_key(model: str, method: str) -> str:
    """The key of the Tune page's own "Locked units" multiselect for a model and method."""
    return f"locked|{model}|{method}"


def locked_units(model: str, method: str, names: list[str]) -> set[str]:
    """The locked units among `names`: the solver's locks (solver methods, while that state exists), else
    the page's own list for the model and method."""
    state = st.session_state
    shared = methods.get(method).solved and LOCK_KEY in state
    chosen = state[LOCK_KEY] if shared else state.get(mirror_key(model, method), [])
    return set(chosen) & set(names)


def restore(model: str, method: str) -> None:
    """Before the solver panel is drawn: if its locks were dropped (it was not drawn for a while), give it
    the mirror's."""
    mirror = mirror_key(model, method)
    if LOCK_KEY not in st.session_state and mirror in st.session_state:
        st.session_state[LOCK_KEY] = list(st.session_state[mirror])


def _share(mirror: str) -> None:
    """on_change of a solver method's mirror: the solver's locks follow it."""
    st.session_state[LOCK_KEY] = list(st.session_state[mirror])


def lock_control(model: str, method: str, names: list[str]) -> set[str]:
    """The "Locked units" multiselect (for solver methods synchronised with LOCK_KEY); returns the locks."""
    mirror = mirror_key(model, method)
    solved = methods.get(method).solved
    if solved and LOCK_KEY in st.session_state:
        st.session_state[mirror] = [n for n in st.session_state[LOCK_KEY] if n in names]
    st.multiselect("Locked units", names, key=mirror, on_change=_share if solved else "rerun",
                   args=(mirror,) if solved else None, persist_state="session",
                   help="Locked sliders keep their value: “All layers”, bulk set, the strategy helper and the "
                        "budget solver leave them alone. The same list as the solver's “Locked”.")
    return set(st.session_state[mirror])

"""Locked units: one notion of locking for the Tune page, kept under the budget solver's "Locked" key.

For the methods the solver handles (Method.solved, core.methods), the solver panel's multiselect (key
state.SOLVER_LOCKED, components.solver) holds the locked units; locked sliders are drawn disabled, and the "All
layers" slider, bulk set, the strategy helper and the solver leave them as they are. Big models also get a
"Locked units" multiselect beside their sliders: for solver methods a mirror of the solver's that writes it when
it changes (and keeps the locks while another method is shown: `restore` gives them back to the solver's
widget, whose value Streamlit drops while it is not drawn); for the other methods, their own list. The values
live in dashboard.state (TuneState).
"""

from __future__ import annotations

import streamlit as st

from core import methods
from dashboard.state import TuneState, locks_key


def locked_units(model: str, method: str, names: list[str]) -> set[str]:
    """The locked units among `names`: the solver's locks (solver methods, while that state exists), else
    the page's own list for the model and method."""
    return TuneState(model, method).locked(names, shared=methods.get(method).solved)


def restore(model: str, method: str) -> None:
    """Before the solver panel is drawn: if its locks were dropped (it was not drawn for a while), give it
    the mirror's."""
    TuneState(model, method).restore_locks()


def lock_control(model: str, method: str, names: list[str]) -> set[str]:
    """The "Locked units" multiselect (for solver methods synchronised with the solver's); returns the locks."""
    tune = TuneState(model, method)
    solved = methods.get(method).solved
    if solved:
        tune.mirror_locks(names)
    st.multiselect("Locked units", names, key=locks_key(model, method),
                   on_change=tune.share_locks if solved else "rerun", persist_state="session",
                   help="Locked sliders keep their value: “All layers”, bulk set, the strategy helper and the "
                        "budget solver leave them alone. The same list as the solver's “Locked”.")
    return tune.own_locks()

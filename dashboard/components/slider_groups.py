"""The ratio sliders of big models (more than FLAT_MAX units): grouped by stage or block in collapsed
expanders that show each group's mean ratio, with a search filter, a bulk set and the locks.

Only the units the search matches are drawn (their groups open); the others keep their values, and the
returned ratios hold every unit. Bulk set writes one value into the selected, unlocked units through a
button callback, before the sliders are drawn.
"""

from __future__ import annotations

import streamlit as st

from core.graph import Unit
from core.hardware import LatencyTable
from dashboard.components.groups import filter_names, group_names, mean_ratio, settable
from dashboard.components.locks import lock_control, locked_units
from dashboard.components.sliders import MAX_RATIO, STEP, Draw, all_slider, draw_focus, drawer, set_ratios, unit_keys
from dashboard.components.text import md

FLAT_MAX = 24  # up to this many units the sliders stay in one flat grid
SEARCH_KEY = "unit-search"  # shared by all models and methods (a heatmap click on a group fills it)


def _keys(model: str, method: str) -> tuple[str, str, str]:
    """Session keys of the bulk-set selection, value and message of a model and method."""
    return f"bulk|{model}|{method}", f"bulk-value|{model}|{method}", f"bulk-message|{model}|{method}"


def _select_filtered(model: str, method: str, names: list[str]) -> None:
    """on_click: the units the search shows, minus the locked ones, become the bulk selection."""
    shown = filter_names(names, st.session_state.get(SEARCH_KEY, ""))
    st.session_state[_keys(model, method)[0]] = settable(shown, locked_units(model, method, names))


def _bulk_set(model: str, method: str, keys: dict[str, str], units: dict[str, Unit],
              table: LatencyTable | None) -> None:
    """on_click: the value into every selected unlocked unit's slider; a message says what changed."""
    selection, value_key, message = _keys(model, method)
    chosen = st.session_state.get(selection, [])
    held = locked_units(model, method, list(keys))
    targets = settable(chosen, held)
    value = st.session_state[value_key]
    set_ratios(keys, units, targets, value, table)
    skipped = [n for n in chosen if n in held]
    note = f"; locked, left as they were: {', '.join(skipped)}" if skipped else ""
    st.session_state[message] = f"Set {len(targets)} unit(s) to {value:.2f}{note}."


def _bulk_row(model: str, method: str, keys: dict[str, str], units: tuple[Unit, ...],
              table: LatencyTable | None) -> None:
    """Selection, value, "Select shown" (the units the search shows) and Apply."""
    selection, value_key, message = _keys(model, method)
    names = list(keys)
    c1, c2, c3, c4 = st.columns([4, 2, 1.1, 0.7], vertical_alignment="bottom")
    c1.multiselect("Bulk set: units", names, key=selection, persist_state="session",
                   help="The units the value goes to (locked ones are skipped).")
    st.session_state.setdefault(value_key, 0.0)
    c2.slider("Value", 0.0, MAX_RATIO, step=STEP, key=value_key)
    c3.button("Select shown", key=f"bulk-filtered|{model}|{method}", on_click=_select_filtered,
              args=(model, method, names), help="Select the units the search shows (locked ones left out).")
    c4.button("Apply", key=f"bulk-apply|{model}|{method}", on_click=_bulk_set,
              args=(model, method, keys, {u.name: u for u in units}, table))
    if st.session_state.get(message):
        st.caption(md(st.session_state[message]))


def _groups(model: str, method: str, units: tuple[Unit, ...], shown: list[str], keys: dict[str, str],
            draw: Draw, opened: bool, columns: int) -> dict[str, float]:
    """One expander per group with shown units; its label carries the group's mean ratio (all its units)."""
    by_name = {u.name: u for u in units}
    values = {n: st.session_state[k] for n, k in keys.items()}
    visible = set(shown)
    ratios = {}
    for group, names in group_names(keys).items():
        drawn = [n for n in names if n in visible]
        if not drawn:
            continue
        label = f"{md(group)} · {len(names)} unit{'s' * (len(names) > 1)} · mean ratio {mean_ratio(values, names):.2f}"
        with st.expander(label, expanded=opened, key=f"group|{model}|{method}|{group}|{'open' * opened}"):
            cols = st.columns(columns)
            for i, name in enumerate(drawn):
                with cols[i % columns]:
                    ratios[name] = draw(by_name[name])
    return ratios


def grouped_sliders(model: str, method: str, units: tuple[Unit, ...], columns: int = 3, focus: str | None = None,
                    table: LatencyTable | None = None, snap: bool = False) -> dict[str, float]:
    """The grouped layout (same arguments and result as components.sliders.ratio_sliders)."""
    snap = snap and table is not None
    keys = unit_keys(model, method, units, snap)
    names = list(keys)
    all_slider(model, method, units, keys, table if snap else None)
    c1, c2 = st.columns(2)
    query = c1.text_input("Search units", key=SEARCH_KEY, persist_state="session",
                          placeholder="e.g. layer3, blocks.7, conv2",
                          help="Shows only the units whose name contains every word (or the units of the group "
                               "named exactly); the others keep their values.")
    with c2:
        held = lock_control(model, method, names)
    _bulk_row(model, method, keys, units, table if snap else None)
    shown = filter_names(names, query)
    if query.strip():
        st.caption(f"Showing {len(shown)} of {len(names)} units matching “{md(query.strip())}”.")
    draw = drawer(method, keys, held, table, snap)
    drawn = draw_focus(units, focus, draw)
    drawn |= _groups(model, method, units, [n for n in shown if n not in drawn], keys, draw, bool(query.strip()),
                     columns)
    return {n: drawn.get(n, st.session_state[keys[n]]) for n in names}

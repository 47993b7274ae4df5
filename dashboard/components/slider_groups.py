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
from dashboard import state
from dashboard.components.groups import filter_names, group_names, mean_ratio, settable
from dashboard.components.locks import lock_control, locked_units
from dashboard.components.sliders import Draw, all_slider, draw_focus, drawer, unit_keys
from dashboard.components.text import md
from dashboard.state import MAX_RATIO, STEP, UNIT_SEARCH, TuneState, bulk_keys, group_key

FLAT_MAX = 24  # up to this many units the sliders stay in one flat grid


def _select_filtered(tune: TuneState, names: list[str]) -> None:
    """on_click: the units the search shows, minus the locked ones, become the bulk selection."""
    shown = filter_names(names, state.unit_search())
    tune.select_for_bulk(settable(shown, locked_units(tune.name, tune.method, names)))


def _bulk_set(tune: TuneState, units: dict[str, Unit], table: LatencyTable | None) -> None:
    """on_click: the value into every selected unlocked unit's slider; a message says what changed."""
    chosen = tune.bulk_selection()
    held = locked_units(tune.name, tune.method, list(units))
    targets = settable(chosen, held)
    value = tune.bulk_value()
    tune.set_sliders(dict.fromkeys(targets, value), units, table)
    skipped = [n for n in chosen if n in held]
    note = f"; locked, left as they were: {', '.join(skipped)}" if skipped else ""
    tune.say_bulk(f"Set {len(targets)} unit(s) to {value:.2f}{note}.")


def _bulk_row(model: str, method: str, keys: dict[str, str], units: tuple[Unit, ...],
              table: LatencyTable | None) -> None:
    """Selection, value, "Select shown" (the units the search shows) and Apply."""
    tune = TuneState(model, method)
    selection, value_key, _, select_shown, apply = bulk_keys(model, method)
    names = list(keys)
    c1, c2, c3, c4 = st.columns([4, 2, 1.1, 0.7], vertical_alignment="bottom")
    c1.multiselect("Bulk set: units", names, key=selection, persist_state="session",
                   help="The units the value goes to (locked ones are skipped).")
    tune.bulk_value()  # given its first value before the slider is drawn
    c2.slider("Value", 0.0, MAX_RATIO, step=STEP, key=value_key)
    c3.button("Select shown", key=select_shown, on_click=_select_filtered, args=(tune, names),
              help="Select the units the search shows (locked ones left out).")
    c4.button("Apply", key=apply, on_click=_bulk_set, args=(tune, {u.name: u for u in units}, table))
    if message := tune.bulk_message():
        st.caption(md(message))


def _groups(model: str, method: str, units: tuple[Unit, ...], shown: list[str], keys: dict[str, str],
            draw: Draw, opened: bool, columns: int) -> dict[str, float]:
    """One expander per group with shown units; its label carries the group's mean ratio (all its units)."""
    by_name = {u.name: u for u in units}
    values = {n: state.get(k, 0.0) for n, k in keys.items()}
    visible = set(shown)
    ratios = {}
    for group, names in group_names(keys).items():
        drawn = [n for n in names if n in visible]
        if not drawn:
            continue
        label = f"{md(group)} · {len(names)} unit{'s' * (len(names) > 1)} · mean ratio {mean_ratio(values, names):.2f}"
        with st.expander(label, expanded=opened, key=group_key(model, method, group, opened)):
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
    query = c1.text_input("Search units", key=UNIT_SEARCH, persist_state="session",
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
    held_values = {n: state.get(k, 0.0) for n, k in keys.items()}  # units the search hides keep theirs
    return {n: drawn.get(n, held_values[n]) for n in names}

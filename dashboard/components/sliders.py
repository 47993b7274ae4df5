"""Per-unit ratio sliders: widgets in, a {unit name: ratio} dict out.

Slider keys carry the model and method, so switching either never mixes settings; the "all layers"
slider writes its value into every unlocked layer slider through a callback (before the rerun draws them).
Keys, values and the one writer of slider values (steps, cap, hardware-aware snapping) are dashboard.state's.
With a measured width-latency table the labels say whether a unit's kept width is fast, and in
hardware-aware mode each slider offers only the fast widths. Locked units (components.locks) are drawn
disabled and keep their value. Unit sliders keep their value while they are not drawn (a search filter on
big models, another method), so every call returns every unit's ratio.

`ratio_sliders` draws the flat layout of small models; components.slider_groups the grouped one of big
models, from the same pieces.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core import methods
from core.graph import Unit, kept_channels
from core.hardware import LatencyTable
from dashboard import state
from dashboard.components.locks import locked_units
from dashboard.components.text import md
from dashboard.state import MAX_RATIO, STEP, TuneState, all_key, slider_key  # noqa: F401 - re-exported

Draw = Callable[[Unit], float]


def _set_all(tune: TuneState, units: dict[str, Unit], table: LatencyTable | None) -> None:
    """on_change of the "all layers" slider: every unlocked unit takes its value."""
    held = locked_units(tune.name, tune.method, list(units))
    value = tune.all_value(hw=table is not None)
    tune.set_sliders({n: value for n in units if n not in held}, units, table)


def _label(unit: Unit, ratio: float, table: LatencyTable | None, what: str) -> str:
    if what == "heads":
        return f"{unit.name} · keeps {kept_channels(unit, ratio)} of {unit.size} heads"
    if table is None or unit.name not in table.widths:
        return unit.label
    kept = kept_channels(unit, ratio)
    if kept in table.frontier(unit.name):
        return f"{unit.label} · keeps {kept} {what} (fast)"
    return f"{unit.label} · keeps {kept} {what} — slow width: {table.snap(unit.name, kept)} runs as fast"


def unit_keys(model: str, method: str, units: tuple[Unit, ...], snap: bool) -> dict[str, str]:
    """Every unit's slider key (each with a value: dashboard.state.TuneState.slider_keys)."""
    return TuneState(model, method).slider_keys([u.name for u in units], hw=snap)


def all_slider(model: str, method: str, units: tuple[Unit, ...], keys: dict[str, str],
               table: LatencyTable | None) -> None:
    """The slider that moves every unlocked unit's slider (table: hardware-aware snapping, or None)."""
    tune = TuneState(model, method)
    st.slider(methods.get(method).all_label, 0.0, MAX_RATIO, step=STEP, key=tune.all_key(hw=table is not None),
              on_change=_set_all, args=(tune, {u.name: u for u in units}, table),
              help="Moves every slider below to this value (locked units keep theirs); then fine-tune them one "
                   "by one.")
    values = list(tune.sliders(keys, hw=table is not None).values())
    if len(set(values)) > 1:  # set one by one or by the solver: this slider shows their mean (solver) or a last move
        st.caption(f"Layers are mixed: from {min(values):.2f} to {max(values):.2f}, mean "
                   f"{sum(values) / len(values):.2f}. Moving this slider sets every unlocked layer to its value.")


def drawer(method: str, keys: dict[str, str], held: set[str], table: LatencyTable | None, snap: bool) -> Draw:
    """A function drawing one unit's slider (disabled when locked) and returning its value."""
    what = methods.get(method).unit  # what a unit's size counts
    widths = table if methods.get(method).hardware_aware else None  # a width-latency table labels the slider

    def draw(unit: Unit) -> float:
        key = keys[unit.name]
        coupled = sorted({m.name for m in unit.members} - {unit.name})
        help_text = f"{unit.size:,} {what}" + (f"; cut together with: {md(', '.join(coupled))}" if coupled else "")
        label = md(_label(unit, state.get(key, 0.0), widths, what))
        locked = unit.name in held
        label += " · locked" if locked else ""
        if snap:
            options = table.ratios_for(unit.name)
            state.keep_choice(key, options)  # before the select slider is drawn
            return st.select_slider(label, options=options, key=key, help=help_text, disabled=locked,
                                    persist_state="session",
                                    format_func=lambda r, u=unit: f"{r:.2f} ({kept_channels(u, r)} kept)")
        return st.slider(label, 0.0, MAX_RATIO, step=STEP, key=key, help=help_text, disabled=locked,
                         persist_state="session")

    return draw


def draw_focus(units: tuple[Unit, ...], focus: str | None, draw: Draw) -> dict[str, float]:
    """The unit selected in a chart, framed, before the others ({} if there is none)."""
    by_name = {u.name: u for u in units}
    if focus not in by_name:
        return {}
    with st.container(border=True):
        st.caption(f"Selected in a chart: {md(focus)}")
        return {focus: draw(by_name[focus])}


def ratio_sliders(model: str, method: str, units: tuple[Unit, ...], columns: int = 3, focus: str | None = None,
                  table: LatencyTable | None = None, snap: bool = False) -> dict[str, float]:
    """Draw a global slider and one slider per unit (the focused one first, framed); return the ratios.

    table: a measured width-latency table (labels then say whether each width is fast); snap: offer only
    fast widths (hardware-aware mode)."""
    snap = snap and table is not None
    keys = unit_keys(model, method, units, snap)
    all_slider(model, method, units, keys, table if snap else None)
    draw = drawer(method, keys, locked_units(model, method, list(keys)), table, snap)
    ratios = draw_focus(units, focus, draw)
    cols = st.columns(columns)
    for i, unit in enumerate(u for u in units if u.name not in ratios):
        with cols[i % columns]:
            ratios[unit.name] = draw(unit)
    return {u.name: ratios[u.name] for u in units}

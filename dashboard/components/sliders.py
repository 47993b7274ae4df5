"""Per-unit ratio sliders: widgets in, a {unit name: ratio} dict out.

Slider keys carry the model and method, so switching either never mixes settings; the "all layers"
slider writes its value into every unlocked layer slider through a callback (before the rerun draws them).
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
from core.graph import Unit, kept_channels, ratio_for
from core.hardware import LatencyTable
from dashboard.components.locks import locked_units
from dashboard.components.text import md

MAX_RATIO = 0.95  # the config accepts anything below 1; 0.95 keeps at least 5% of every layer
STEP = 0.01

Draw = Callable[[Unit], float]


def slider_key(model: str, method: str, unit: str, hw: bool = False) -> str:
    return f"ratio{'-hw' if hw else ''}|{model}|{method}|{unit}"


def all_key(model: str, method: str, hw: bool = False) -> str:
    """The key of the slider that moves every unit's slider at once."""
    return f"ratio-all{'-hw' if hw else ''}|{model}|{method}"


def shown_ratio(unit: Unit, value: float, table: LatencyTable | None) -> float:
    """What a unit's slider takes for `value`: the value, or (hardware-aware) the ratio of the fast width at
    or below what the value keeps."""
    if table is None:
        return value
    return ratio_for(unit, table.snap(unit.name, kept_channels(unit, value)))


def set_ratios(keys: dict[str, str], units: dict[str, Unit], names: list[str], value: float,
               table: LatencyTable | None) -> None:
    """Write `value` into the sliders of `names` (call from a callback: before they are drawn)."""
    for name in names:
        st.session_state[keys[name]] = shown_ratio(units[name], value, table)


def show_mean(model: str, method: str, units: list[str], hw: bool) -> float:
    """Set the "All layers" slider to the mean of the unit sliders, in slider steps (after a solver filled them:
    the slider then reflects what was set; a caption says the layers are mixed). Call before it is drawn."""
    values = [st.session_state.get(slider_key(model, method, u, hw=hw), 0.0) for u in units]
    mean = round(min(MAX_RATIO, round(sum(values) / max(len(values), 1) / STEP) * STEP), 2)
    st.session_state[all_key(model, method, hw=hw)] = mean
    return mean


def _set_all(keys: dict[str, str], source: str, units: dict[str, Unit], table: LatencyTable | None,
             model: str, method: str) -> None:
    """on_change of the "all layers" slider: every unlocked unit takes its value."""
    held = locked_units(model, method, list(keys))
    set_ratios(keys, units, [n for n in keys if n not in held], st.session_state[source], table)


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
    """Every unit's slider key, each given a value (0) if it has none yet. The value is set here, not as
    the widget's value=: callbacks also write it."""
    keys = {u.name: slider_key(model, method, u.name, hw=snap) for u in units}
    for key in keys.values():
        st.session_state.setdefault(key, 0.0)
    return keys


def all_slider(model: str, method: str, units: tuple[Unit, ...], keys: dict[str, str],
               table: LatencyTable | None) -> None:
    """The slider that moves every unlocked unit's slider (table: hardware-aware snapping, or None)."""
    global_key = all_key(model, method, hw=table is not None)
    st.session_state.setdefault(global_key, 0.0)
    st.slider(methods.get(method).all_label, 0.0, MAX_RATIO, step=STEP, key=global_key, on_change=_set_all,
              args=(keys, global_key, {u.name: u for u in units}, table, model, method),
              help="Moves every slider below to this value (locked units keep theirs); then fine-tune them one "
                   "by one.")
    values = [st.session_state[k] for k in keys.values()]
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
        label = md(_label(unit, st.session_state[key], widths, what))
        locked = unit.name in held
        label += " · locked" if locked else ""
        if snap:
            options = table.ratios_for(unit.name)
            if st.session_state[key] not in options:
                st.session_state[key] = options[0]
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

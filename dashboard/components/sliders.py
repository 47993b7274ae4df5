"""Per-unit ratio sliders: widgets in, a {unit name: ratio} dict out.

Slider keys carry the model and method, so switching either never mixes settings; the "all layers"
slider writes its value into every layer slider through a callback (before the rerun draws them).
With a measured width-latency table the labels say whether a unit's kept width is fast, and in
hardware-aware mode each slider offers only the fast widths.
"""

from __future__ import annotations

import streamlit as st

from core.graph import Unit, kept_channels, ratio_for
from core.hardware import LatencyTable

MAX_RATIO = 0.95  # the config accepts anything below 1; 0.95 keeps at least 5% of every layer
STEP = 0.01
WHAT = {"channel": "channels", "neuron": "units", "head": "heads"}  # what a unit's size counts (else weights)
ALL_LABEL = {"neuron": "All hidden layers", "head": "All attention modules"}


def slider_key(model: str, method: str, unit: str, hw: bool = False) -> str:
    return f"ratio{'-hw' if hw else ''}|{model}|{method}|{unit}"


def all_key(model: str, method: str, hw: bool = False) -> str:
    """The key of the slider that moves every unit's slider at once."""
    return f"ratio-all{'-hw' if hw else ''}|{model}|{method}"


def _set_all(keys: dict[str, str], source: str, units: dict[str, Unit], table: LatencyTable | None) -> None:
    value = st.session_state[source]
    for name, key in keys.items():
        if table is None:
            st.session_state[key] = value
        else:  # hardware-aware: the fast width at or below what the ratio keeps
            unit = units[name]
            st.session_state[key] = ratio_for(unit, table.snap(name, kept_channels(unit, value)))


def _label(unit: Unit, ratio: float, table: LatencyTable | None, what: str) -> str:
    if what == "heads":
        return f"{unit.name} · keeps {kept_channels(unit, ratio)} of {unit.size} heads"
    if table is None or unit.name not in table.widths:
        return unit.label
    kept = kept_channels(unit, ratio)
    if kept in table.frontier(unit.name):
        return f"{unit.label} · keeps {kept} {what} (fast)"
    return f"{unit.label} · keeps {kept} {what} — slow width: {table.snap(unit.name, kept)} runs as fast"


def ratio_sliders(model: str, method: str, units: tuple[Unit, ...], columns: int = 3, focus: str | None = None,
                  table: LatencyTable | None = None, snap: bool = False) -> dict[str, float]:
    """Draw a global slider and one slider per unit (the focused one first, framed); return the ratios.

    table: a measured width-latency table (labels then say whether each width is fast); snap: offer only
    fast widths (hardware-aware mode)."""
    snap = snap and table is not None
    by_name = {u.name: u for u in units}
    keys = {u.name: slider_key(model, method, u.name, hw=snap) for u in units}
    global_key = all_key(model, method, hw=snap)
    st.session_state.setdefault(global_key, 0.0)
    for key in keys.values():
        st.session_state.setdefault(key, 0.0)  # set here, not as value=: the callback also writes them
    st.slider(ALL_LABEL.get(method, "All layers"), 0.0, MAX_RATIO, step=STEP, key=global_key, on_change=_set_all,
              args=(keys, global_key, by_name, table if snap else None),
              help="Moves every slider below to this value; then fine-tune them one by one.")
    what = WHAT.get(method, "weights")

    def draw(unit: Unit) -> float:
        key = keys[unit.name]
        coupled = sorted({m.name for m in unit.members} - {unit.name})
        help_text = f"{unit.size:,} {what}" + (f"; cut together with: {', '.join(coupled)}" if coupled else "")
        label = _label(unit, st.session_state[key], table if method == "channel" else None, what)
        if snap:
            options = table.ratios_for(unit.name)
            if st.session_state[key] not in options:
                st.session_state[key] = options[0]
            return st.select_slider(label, options=options, key=key, help=help_text,
                                    format_func=lambda r, u=unit: f"{r:.2f} ({kept_channels(u, r)} kept)")
        return st.slider(label, 0.0, MAX_RATIO, step=STEP, key=key, help=help_text)

    ratios = {}
    if focus in by_name:
        with st.container(border=True):
            st.caption(f"Selected in a chart: {focus}")
            ratios[focus] = draw(by_name[focus])
    cols = st.columns(columns)
    for i, unit in enumerate(u for u in units if u.name != focus):
        with cols[i % columns]:
            ratios[unit.name] = draw(unit)
    return {u.name: ratios[u.name] for u in units}

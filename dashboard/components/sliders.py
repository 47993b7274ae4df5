"""Per-layer ratio sliders: widgets in, a {unit name: ratio} dict out.

Slider keys carry the model and method, so switching either never mixes settings; the "all layers"
slider writes its value into every layer slider through a callback (before the rerun draws them).
"""

from __future__ import annotations

import streamlit as st

from core.graph import Unit

MAX_RATIO = 0.95  # the config accepts anything below 1; 0.95 keeps at least 5% of every layer
STEP = 0.01


def slider_key(model: str, method: str, unit: str) -> str:
    return f"ratio|{model}|{method}|{unit}"


def _set_all(keys: list[str], source: str) -> None:
    for key in keys:
        st.session_state[key] = st.session_state[source]


def ratio_sliders(model: str, method: str, units: tuple[Unit, ...], columns: int = 3,
                  focus: str | None = None) -> dict[str, float]:
    """Draw a global slider and one slider per unit (the focused one first, framed); return the ratios."""
    keys = [slider_key(model, method, u.name) for u in units]
    global_key = f"ratio-all|{model}|{method}"
    for key in [global_key, *keys]:
        st.session_state.setdefault(key, 0.0)  # set here, not as value=: the callback also writes them
    st.slider("All layers", 0.0, MAX_RATIO, step=STEP, key=global_key, on_change=_set_all, args=(keys, global_key),
              help="Moves every layer slider below to this value; then fine-tune layers one by one.")
    what = "weights" if method == "unstructured" else "channels"

    def draw(unit: Unit, key: str) -> float:
        coupled = sorted({m.name for m in unit.members} - {unit.name})
        help_text = f"{unit.size:,} {what}" + (f"; cut together with: {', '.join(coupled)}" if coupled else "")
        return st.slider(unit.label, 0.0, MAX_RATIO, step=STEP, key=key, help=help_text)

    ratios = {}
    pairs = list(zip(units, keys, strict=True))
    focused = [(u, k) for u, k in pairs if u.name == focus]
    if focused:
        with st.container(border=True):
            st.caption(f"Selected in a chart: {focus}")
            ratios[focus] = draw(*focused[0])
    cols = st.columns(columns)
    for i, (unit, key) in enumerate(p for p in pairs if p[0].name != focus):
        with cols[i % columns]:
            ratios[unit.name] = draw(unit, key)
    return {u.name: ratios[u.name] for u in units}

"""HF-compatible mode of the Tune page: for a Hugging Face model, only the cuts its config can describe.

transformers reloads a pruned folder only when config.json can say its sizes: one head count and one feed-forward
width for every layer (core.export_hf). With the toggle on, a method that shrinks layers (channel, neuron, head)
gets one slider per kind of unit in the layer stack (core.export_hf.layer_kinds: e.g. every layer's feed-forward)
instead of one per unit, and units outside the stack (a pooler's hidden layer: no config field holds its width)
are not offered; the budget solver then solves uniformly (components.solver). Masks keep every shape and the
layer method removes whole layers, which a config says as fewer layers: those controls stay as they are.

A kind's slider is its first unit's slider (same key); before it is drawn, every unit of the kind takes its value,
so the per-unit sliders agree when the toggle goes off. "Check HF export" cuts a copy with the current config
(core.export_hf.hf_refusal, cached) — on the button only, never on a slider move.
"""

from __future__ import annotations

import streamlit as st

from core import methods
from core.config import PruneConfig
from core.export_hf import layer_kinds, stack_prefix
from core.graph import Unit, kept_channels
from dashboard import cache, state
from dashboard.components.methods import Choice
from dashboard.components.text import md
from dashboard.state import MAX_RATIO, STEP, TuneState


def is_hf(name: str) -> bool:
    """Whether model `name` is a Hugging Face model with a layer stack its config counts (the toggle's models)."""
    return stack_prefix(cache.spec(name).model) is not None


def narrows(method: str) -> bool:
    """Whether HF-compatible mode changes `method`'s controls: it shrinks layers with one slider per unit."""
    technique = methods.get(method)
    return technique.sliders and not technique.mask and not technique.takes_blocks


def toggle(name: str, method: str) -> bool:
    """The toggle (Hugging Face models only); True when HF-compatible mode narrows this method's controls."""
    if not is_hf(name):
        return False
    on = st.toggle("HF-compatible", key=state.hf_compatible_key(name),
                   help="Offer only cuts the model's Hugging Face config can describe, so the run exports as a "
                        "folder that from_pretrained loads: every layer keeps the same heads and feed-forward "
                        "width; units outside the layers (e.g. a pooler) are left whole.")
    if on and not narrows(method):
        what = "masks keep every tensor's shape" if methods.get(method).mask else "fewer layers is a config field"
        st.caption(f"HF-compatible: any {method} setting exports ({what}).")
    return on and narrows(method)


def _label(kind: str, units: list[Unit], ratio: float, what: str) -> str:
    """The kind, its layers and what each keeps; a kind of one unit (e.g. the hidden size, a group coupling every
    layer, named after its first member) by that unit's own name."""
    kept = f"keeps {kept_channels(units[0], ratio)} of {units[0].size} {what}"
    return f"{kind} · {len(units)} layers · {kept} each" if len(units) > 1 else f"{units[0].name} · {kept}"


def controls(name: str, method: str, units: tuple[Unit, ...]) -> Choice:
    """One slider per kind of layer-stack unit; every unit of a kind gets its value (the config's ratios)."""
    by_name = {u.name: u for u in units}
    kinds = layer_kinds(cache.spec(name).model, list(by_name))
    tune = TuneState(name, method)
    keys = tune.slider_keys([members[0] for members in kinds.values()])
    tune.set_sliders({u: tune.slider(members[0]) for members in kinds.values() for u in members})  # before drawing
    technique = methods.get(method)
    st.markdown("#### Ratio removed per kind of unit, the same in every layer")
    ratios = {}
    for kind, members in kinds.items():
        shown = [by_name[u] for u in members]
        value = st.slider(md(_label(kind, shown, tune.slider(members[0]), technique.unit)), 0.0, MAX_RATIO,
                          step=STEP, key=keys[members[0]], persist_state="session",
                          help=f"Every layer's {md(kind)} keeps the same width: a Hugging Face config holds one.")
        ratios |= dict.fromkeys(members, value)
    return Choice(ratios)


def check(name: str, config: PruneConfig | None) -> None:
    """The "Check HF export" button (Hugging Face models): whether the current config exports as a folder, or why
    not in one line."""
    if not is_hf(name):
        return
    if st.button("Check HF export", key=state.HF_CHECK, disabled=config is None,
                 help="Cuts a copy with this config and builds the model from the updated Hugging Face config."):
        why = cache.hf_refusal(name, config.to_json())
        if why is None:
            st.success("This config exports as a Hugging Face folder (from_pretrained loads it).")
        else:
            st.error(f"No Hugging Face folder for this config: {md(why)}")

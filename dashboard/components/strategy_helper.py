"""The Tune page's "Which pruning should I use?" expander: the decision guide (core.strategy) as four
questions, its recommendation with the reason, and a button that sets Tune to it.

Apply (a callback, before the widgets are drawn) sets the method radio, the criterion, the schedule
(components.training's keys; with no training data the run stays one-shot without fine-tuning) and every
unlocked slider of the method to the recommended ratio. A method with nothing to prune in this model (heads
in a CNN) is said instead of applied.
"""

from __future__ import annotations

import streamlit as st

from core import methods
from core.strategy import BOTTLENECKS, FAMILIES, HARDWARE, LOSSES, Recommendation, Situation, recommend
from dashboard import cache, state
from dashboard.cache import model_family
from dashboard.components import messages
from dashboard.components.locks import locked_units
from dashboard.components.text import md
from dashboard.components.training import missing_training_data

LABELS = {
    "memory": "Memory (model size)", "speed": "Speed (latency)", "hardware": "Hardware constraints",
    "none": "None", "small": "Under 2%", "tolerable": "2–5%",
    "cpu": "CPU", "gpu": "GPU", "mobile": "Mobile / embedded", "specialized": "Specialised (block-sparse)",
    "cnn": "CNN", "transformer": "Transformer", "mlp": "MLP",
}


def describe(rec: Recommendation) -> str:
    """The recommendation in one line of markdown."""
    return (f"**{rec.method}** pruning · criterion **{rec.criterion}** · **{rec.schedule}** schedule · "
            f"start at **{rec.ratio:.0%}** removed")


def situation(name: str) -> Situation:
    """The four answers (the model family pre-filled from the model, editable)."""
    c = st.columns(4)
    bottleneck = c[0].selectbox("Bottleneck", BOTTLENECKS, key=state.STRATEGY_BOTTLENECK, format_func=LABELS.get)
    loss = c[1].selectbox("Acceptable accuracy loss", LOSSES, key=state.STRATEGY_LOSS, format_func=LABELS.get)
    hardware = c[2].selectbox("Target hardware", HARDWARE, key=state.STRATEGY_HARDWARE, format_func=LABELS.get)
    family = c[3].selectbox("Model family", FAMILIES, index=FAMILIES.index(model_family(name)),
                            key=state.strategy_family_key(name), format_func=LABELS.get,
                            help="Detected from the model's layers (attention: transformer; convolutions: CNN).")
    return Situation(bottleneck, loss, hardware, family, has_data=cache.spec(name).has_data)


def _apply(name: str, rec: Recommendation) -> None:
    """on_click: method, criterion, schedule and the method's unlocked sliders to the recommendation."""
    state.choose_method(rec.method, rec.criterion)
    notes = [f"method {rec.method}, criterion {rec.criterion}"]
    technique = methods.get(rec.method)
    if technique.hardware_aware:
        state.set_hw_aware(False)  # plain sliders take any ratio
    if technique.sliders:
        notes.append(_sliders(name, rec.method, rec.ratio))
    elif technique.pattern == "nm":
        state.set_nm(2, 4)
        notes.append("N:M set to 2:4 (50% of each layer's weights: what sparse tensor cores run)")
    notes.append(_schedule(name, rec.schedule))
    state.say(state.STRATEGY_MESSAGE, name, "success", "Tune is set: " + "; ".join(notes) + ".")


def _sliders(name: str, method: str, ratio: float) -> str:
    """Every unlocked slider of the method (and its "all" slider) to ratio; the note for the message."""
    units = {u.name: u for u in cache.cost_model(name, method).units}
    held = locked_units(name, method, list(units))
    tune = state.TuneState(name, method)
    tune.set_sliders({n: ratio for n in units if n not in held})
    value = tune.set_all(ratio)
    kept = f" (locked, kept: {', '.join(sorted(held))})" if held else ""
    return f"{len(units) - len(held)} slider(s) at {value:.2f}{kept}"


def _schedule(name: str, kind: str) -> str:
    """The schedule radio (and at least one fine-tuning epoch), or why the model cannot fine-tune."""
    missing = missing_training_data(cache.spec(name), label=cache.display_name(name))
    if missing:
        return f"schedule stays one-shot without fine-tuning ({missing})"
    epochs = state.set_schedule(kind)
    return f"{kind} schedule with {epochs} fine-tuning epoch(s)"


def helper(name: str) -> None:
    """The expander: questions, recommendation, reason, and Apply (or why it cannot apply)."""
    with st.expander("Which pruning should I use?", expanded=False):
        rec = recommend(situation(name))
        st.markdown(describe(rec))
        st.caption(f"Why: {md(rec.reason)}." + (f" Also: {rec.also}." if rec.also else ""))
        units = cache.cost_model(name, rec.method).units
        if not units:
            st.warning(f"{md(cache.display_name(name))} {methods.get(rec.method).no_units}: "
                       f"{rec.method} pruning cannot be applied to it. Check the model family, or answer differently.")
        st.button("Apply to Tune", key=state.STRATEGY_APPLY, disabled=not units, on_click=_apply, args=(name, rec),
                  help="Sets the method, criterion, schedule and every unlocked slider of the method to the "
                       "recommended ratio.")
        messages.show(state.STRATEGY_MESSAGE, name)  # once: the next rerun does not repeat it
        messages.clear(state.STRATEGY_MESSAGE, name)

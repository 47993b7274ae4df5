"""Fine-tuning and schedule controls of the Tune page: widgets in, the config's training fields out.

Nothing is validated here: the fields go into PruneConfig, which refuses combinations that cannot work
(e.g. a dynamic schedule with channel pruning) with the reason, and the page shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from core.config import BATCHNORM_MODES, LIMITS, OPTIMIZERS, SCHEDULES, FinetuneConfig
from core.errors import PruneLabError
from core.recipes import RECIPE_FIELDS, Choice, describe, explain
from core.spec import ModelSpec, require_data
from core.workflows import defaults
from dashboard import state
from dashboard.components.text import md

SCHEDULE_HELP = {
    "oneshot": "prune once to the final ratios, then fine-tune",
    "iterative": "prune a little more in each of several steps, fine-tuning in between",
    "dynamic": "gradual magnitude pruning during fine-tuning (unstructured or block, l1/l2)",
}


@dataclass(frozen=True)
class Training:
    """The run's seed and the fields of its FinetuneConfig and Schedule."""

    seed: int
    finetune: dict[str, Any]
    schedule: dict[str, Any]


def missing_training_data(spec: ModelSpec, what: str = "fine-tuning", label: str | None = None) -> str | None:
    """Why `what` cannot train spec's model (core.models.require_data's reason: no data at all, or an
    empty training set), naming the model `label` (default its name), or None if it can."""
    try:
        require_data(replace(spec, name=label or spec.name), what)
    except PruneLabError as e:
        return str(e)
    return None


def options(spec: ModelSpec, recipe: Choice, label: str | None = None) -> Training:
    """Epochs and seed, the fine-tune recipe (chosen for the model: `recipe`, core.recipes; the user may set it),
    then schedule, distillation and rewind in an expander; without training data, fine-tuning is off and disabled
    (one-shot pruning only), and the reason is shown."""
    missing = missing_training_data(spec, label=label)
    if missing:
        state.no_finetuning()
    c1, c2 = st.columns(2)
    epochs = c1.number_input("Fine-tune epochs", 0, 20, "min" if missing else defaults.PAGE_FINETUNE_EPOCHS,
                             key=state.EPOCHS, disabled=bool(missing),
                             help="warm-up then cosine decay of the learning rate; 0 skips fine-tuning. The budget "
                                  "of the whole schedule." + (f" Not available: {md(missing)}." if missing else ""))
    seed = c2.number_input("Seed", 0, 2**31 - 1, defaults.SEED, key=state.SEED)
    finetune: dict[str, Any] = {"epochs": 0 if missing else int(epochs)}
    if missing:
        st.caption(f"No fine-tuning: {md(missing)}. One-shot pruning only.")
        return Training(int(seed), finetune, {"kind": "oneshot"})
    finetune |= _recipe(recipe)
    with st.expander("Schedule, distillation and rewind", expanded=False):
        schedule = _schedule()
        finetune |= _teacher_and_rewind()
    return Training(int(seed), finetune, schedule)


def _recipe(choice: Choice) -> dict[str, Any]:
    """The recipe chosen for the model, in words with the reason; or, when the user sets it, its fields
    (pre-filled with the choice the first time)."""
    own = st.checkbox("Set the optimiser and learning rate myself", key=state.RECIPE_OWN,
                      help="by default the recipe is chosen from the model: SGD for PruneLab's samples, AdamW at a "
                           "small learning rate for transformers, BatchNorm statistics re-estimated for other CNNs")
    chosen = choice.fill(FinetuneConfig())
    if not own:
        st.caption(f"Fine-tune recipe: {md(explain(choice, chosen))}.")
        return {f: getattr(chosen, f) for f in RECIPE_FIELDS}
    c1, c2, c3, c4 = st.columns(4)
    optimizer = c1.selectbox("Optimiser", OPTIMIZERS, OPTIMIZERS.index(choice.optimizer), key=state.OPTIMIZER,
                             help="sgd: momentum 0.9 (Nesterov); adamw: Adam with decoupled weight decay")
    lr = c2.number_input("Peak learning rate", 1e-6, 1.0, choice.lr, format="%.1e", key=state.LR)
    batchnorm = c3.selectbox("BatchNorm statistics", BATCHNORM_MODES, BATCHNORM_MODES.index(choice.batchnorm),
                             key=state.BATCHNORM, help="train: follow the batches; frozen: kept as they are; "
                                                       "recalibrate: follow the batches, then re-estimated after")
    batch = c4.number_input("Batch size", 1, 65_536, choice.batch_size, key=state.BATCH_SIZE,
                            help="examples per optimiser step: smaller batches take more steps per epoch")
    st.caption(f"Chosen for this model: {md(describe(chosen))} ({md(choice.reason)}).")
    return {"optimizer": optimizer, "lr": float(lr), "batchnorm": batchnorm, "batch_size": int(batch)}


def _schedule() -> dict[str, Any]:
    """Kind, and only the settings that kind uses: steps and the last round's share (iterative), curve, update
    interval (dynamic)."""
    kind = st.radio("Schedule", SCHEDULES, horizontal=True, key=state.SCHEDULE,
                    captions=[SCHEDULE_HELP[k] for k in SCHEDULES])
    fields: dict[str, Any] = {"kind": kind}
    c1, c2, c3 = st.columns(3)
    if kind == "iterative":
        fields["steps"] = int(c1.number_input("Steps", 1, 100, defaults.SCHEDULE.steps, key=state.SCHEDULE_STEPS,
                                              help="pruning rounds; the epochs are split between them"))
        low, high = LIMITS["last_round"]
        last = c3.number_input("Budget after the last cut", low, high, defaults.SCHEDULE.last_round, 0.05,
                               key=state.SCHEDULE_LAST, placeholder="equal share",
                               help="share of the fine-tuning budget spent after the last cut, the rest split evenly "
                                    "between the earlier rounds; empty: every round an equal share")
        fields["last_round"] = None if last is None else float(last)
    if kind != "oneshot":
        fields["curve"] = c2.radio("Curve", ["cubic", "linear"], horizontal=True, key=state.SCHEDULE_CURVE,
                                   help="share of the final ratio reached over time: cubic cuts most early "
                                        "(Zhu & Gupta), linear in equal increments")
    if kind == "dynamic":
        fields["update_every"] = int(c3.number_input("Update masks every", 1, 10_000, defaults.SCHEDULE.update_every,
                                                     key=state.SCHEDULE_EVERY,
                                                     help="optimiser steps between mask updates"))
    return fields


def _teacher_and_rewind() -> dict[str, Any]:
    """Knowledge distillation from the unpruned model (temperature, alpha) and lottery-ticket rewind."""
    c1, c2, c3, c4 = st.columns(4)
    fields: dict[str, Any] = {
        "distill": c1.checkbox("Distillation", key=state.DISTILL,
                               help="train toward the unpruned model's softened logits as well as the labels"),
        "rewind": c4.checkbox("Lottery-ticket rewind", key=state.REWIND,
                              help="reset surviving weights to their initial values before training (mask methods)"),
    }
    if fields["distill"]:
        fields["temperature"] = float(c2.number_input("Temperature", 0.5, 100.0, defaults.FINETUNE.temperature, 0.5,
                                                      key=state.DISTILL_TEMPERATURE,
                                                      help="softens both models' logits"))
        fields["alpha"] = float(c3.slider("Alpha", 0.0, 1.0, defaults.FINETUNE.alpha, 0.05, key=state.DISTILL_ALPHA,
                                          help="weight of the distillation term; 1 − alpha weighs the labels"))
    return fields

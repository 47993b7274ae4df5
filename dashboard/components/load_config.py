"""Loading a config into the Tune page: a recorded experiment's ("Load into Tune") or an uploaded config.json.

A config is checked against the model shown (core.prune.check_config_matches: same model, same weights; every
unit or block it names must be one the model has, core.graph.units) before anything changes; then the method
radio, the criterion, the method's sliders (or N:M / block shape, or the layer method's block checkboxes) are
set through dashboard.state (the sliders by its one slider writer: capped at MAX_RATIO, as a solver fill sets
them). Callbacks do it (they run before the widgets are drawn) and leave a
(kind, text) message about the model for the page to show (components.messages); a rejected config changes no
widget. A config with stages (a recipe, `then`) fills the Tune page's stage list (components.stages), every stage
checked against the model; a config without stages empties that list, so Apply runs what was loaded.

The schedule, fine-tuning and seed are set too (components.training's keys), within what those widgets take; a
value they cannot show (more epochs than the field allows, a batch size Tune has no field for) is named in the
message. A model without training data stays one-shot without fine-tuning, and the message says so.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.config import FinetuneConfig, PruneConfig, read_config_bytes
from core.errors import PruneLabError
from core.models import is_registered
from core.prune import check_config_matches
from core.store import Store
from core.user_models import describe_reference
from core.workflows import check_units
from dashboard import cache, state
from dashboard.components import messages
from dashboard.components.own_model import OWN
from dashboard.components.training import missing_training_data
from dashboard.state import IMPORT_MESSAGE, LOAD_MESSAGE, MAX_RATIO


def _for_this_model(name: str, config: PruneConfig) -> PruneConfig:
    """config, renamed to the handle if it names model `name` by its reference (as Export hands it out); for
    another model, PruneLabError saying how to switch, and nothing loaded: a config never loads the model it
    names. A model file or folder is offered to the sidebar's own-model form (state.offer_model_file), where the
    user's Load runs it."""
    shown = cache.display_name(name)
    if config.model in (name, shown):
        return config.for_model(name)
    wrong = f"config is for model {config.model!r}, not {shown!r}"
    if is_registered(config.model):
        raise PruneLabError(f"{wrong}: choose {config.model} in the sidebar, then import it again")
    state.offer_model_file(config.model)
    raise PruneLabError(f"{wrong}; {describe_reference(config.model)}, so nothing was loaded. If you trust it, "
                        "load it under “Your own model…” in the sidebar (button below), then import the config again")


def checked(name: str, config: PruneConfig) -> PruneConfig:
    """config, if it fits model `name`: PruneLabError (the engine's one line) if it is for another model or
    other weights, or names units the model does not have. A user model's config may name it by its reference
    (as Export hands it out): it is renamed to the dashboard's handle."""
    config = _for_this_model(name, config)
    spec = cache.spec(name)
    check_config_matches(spec, config)
    known = lambda method: [u.name for u in cache.cost_model(name, method).units]  # noqa: E731  (cached units)
    check_units(spec, config, known, label=cache.display_name(name))  # the CLI's check, every stage
    return config


def tune_state(name: str, config: PruneConfig) -> tuple[dict[str, Any], dict[str, float], list[str]]:
    """The widget values (by session key) that show `config` on Tune, the ratios its sliders take (every unit
    of the method: 0 where the config has none; dashboard.state's one slider writer rounds and caps them), and
    notes on what could not be shown as is."""
    values: dict[str, Any] = {state.METHOD: config.method, state.QUANTIZE: config.quantize == "int8"}
    technique = config.technique
    if technique.uses_criterion:
        values[state.CRITERION] = config.criterion
    units = [u.name for u in cache.cost_model(name, config.method).units]
    notes: list[str] = []
    sliders = {u: config.ratios.get(u, 0.0) for u in units} if technique.sliders else {}
    if capped := sorted(u for u, r in sliders.items() if r > MAX_RATIO):
        notes.append(f"capped at {MAX_RATIO} (the sliders' maximum): {', '.join(capped)}")
    if technique.hardware_aware:
        values[state.HW_AWARE] = False  # plain sliders take any ratio
    if technique.pattern == "block":
        values[state.BLOCK_ROWS], values[state.BLOCK_COLS] = config.pattern.block
    if technique.pattern == "nm":
        eligible = cache.nm_layers(name)
        values |= {state.NM_N: config.pattern.n, state.NM_M: config.pattern.m,
                   state.nm_layers_key(name): [u for u in eligible if config.ratios.get(u)]}
        if skipped := sorted(u for u, r in config.ratios.items() if r and u not in eligible):
            notes.append(f"left out (one input channel per group, no N:M choice): {', '.join(skipped)}")
    if technique.takes_blocks:
        values |= {state.drop_key(name, b): b in config.remove_blocks for b in units}
    return values, sliders, notes


EPOCHS_MAX, LR_RANGE = 20, (1e-6, 1.0)  # what components.training's fields take


def training_state(name: str, config: PruneConfig) -> tuple[dict[str, Any], list[str]]:
    """The session-state values of components.training's widgets that show config's schedule, fine-tuning and
    seed, and notes on what could not be shown as is."""
    sched, ft = config.schedule, config.finetune
    values: dict[str, Any] = {state.SEED: config.seed}
    if missing := missing_training_data(cache.spec(name), label=cache.display_name(name)):
        wanted = ft.epochs or sched.kind != "oneshot"
        return values, [f"schedule and fine-tuning not loaded ({missing})"] if wanted else []
    notes: list[str] = []
    epochs = min(ft.epochs, EPOCHS_MAX)
    if epochs != ft.epochs:
        notes.append(f"fine-tuning epochs capped at {EPOCHS_MAX} (the config has {ft.epochs})")
    lr = min(max(ft.lr, LR_RANGE[0]), LR_RANGE[1])
    if lr != ft.lr:
        notes.append(f"learning rate {ft.lr:g} shown as {lr:g} (the field's range)")
    if ft.batch_size != FinetuneConfig().batch_size:
        notes.append(f"batch size {ft.batch_size} not loaded (Tune fine-tunes with {FinetuneConfig().batch_size})")
    values |= {state.RECIPE_OWN: True, state.OPTIMIZER: ft.optimizer, state.BATCHNORM: ft.batchnorm}  # the config's own
    values |= {state.EPOCHS: epochs, state.LR: lr, state.DISTILL: ft.distill, state.DISTILL_TEMPERATURE: ft.temperature,
               state.DISTILL_ALPHA: ft.alpha, state.REWIND: ft.rewind, state.SCHEDULE: sched.kind,
               state.SCHEDULE_STEPS: sched.steps, state.SCHEDULE_CURVE: sched.curve,
               state.SCHEDULE_EVERY: sched.update_every, state.SCHEDULE_LAST: sched.last_round}
    return values, notes


def load(name: str, config: PruneConfig, source: str) -> str:
    """Check config against model `name`, put it into Tune's session state, and return the success text.
    Raises PruneLabError (nothing changed) if it does not fit."""
    config = checked(name, config)
    values, sliders, notes = tune_state(name, config)
    training, training_notes = training_state(name, config)
    state.load_settings(values | training)  # in a callback: before Tune's widgets are drawn
    state.TuneState(name, config.method).set_sliders(sliders)
    had = len(state.recipe_stages(name))
    state.set_recipe_stages(name, config.stages() if config.then else [])  # Apply runs what was loaded
    what = (f"{len(config.remove_blocks)} block(s) to remove" if config.technique.takes_blocks
            else f"{sum(1 for r in config.ratios.values() if r > 0)} non-zero ratio(s)")
    recipe = (f"recipe of {len(config.stages())} stages loaded ({config.methods_text()}), stage 1 shown in the "
              "controls: " if config.then else f"the recipe list ({had} stage(s)) cleared; " if had else "")
    return (f"Loaded {source} into Tune: {recipe}{config.method}, {what}; {schedule_words(config)}, seed "
            f"{config.seed}" + "".join(f"; {n}" for n in notes + training_notes)
            + ". Open the Tune page to review and apply.")


def schedule_words(config: PruneConfig) -> str:
    """'iterative schedule, 3 fine-tuning epoch(s) at lr 0.005' for the message."""
    ft = config.finetune
    return f"{config.schedule.kind} schedule, {ft.epochs} fine-tuning epoch(s) at lr {ft.lr:g}"


def import_bytes(name: str, data: bytes, filename: str = "config.json") -> str:
    """Parse an uploaded config exactly as the CLI reads a file (core.config.read_config_bytes: size, BOM,
    nesting, huge numbers) and load it into Tune; PruneLabError if unusable."""
    return load(name, read_config_bytes(data), filename)


def on_load(name: str, exp_id: str) -> None:
    """on_click callback of "Load into Tune": the recorded experiment's config into the Tune widgets."""
    state.offer_model_file(None)
    try:
        messages.say(LOAD_MESSAGE, name, "success", load(name, Store().get(exp_id).config, f"experiment {exp_id}"))
    except PruneLabError as e:
        messages.say(LOAD_MESSAGE, name, "error", f"Cannot load {exp_id}: {e}")


def on_upload(name: str, key: str) -> None:
    """on_change callback of the config uploader (key: its widget key): the file's config into Tune."""
    state.offer_model_file(None)
    upload = state.get(key)
    if upload is None:  # the file was removed
        messages.clear(IMPORT_MESSAGE, name)
        return
    try:
        messages.say(IMPORT_MESSAGE, name, "success", import_bytes(name, upload.getvalue(), upload.name))
    except PruneLabError as e:
        messages.say(IMPORT_MESSAGE, name, "error", f"Cannot load {upload.name}: {e}")


def _open_own_model_form(ref: str) -> None:
    """on_click: the sidebar switches to "Your own model…" with ref typed in; nothing is loaded until Load."""
    state.open_own_model_form(OWN, ref)


def offer_own_model() -> None:
    """Under an import refused because its config names a model file: the button that takes the user to the
    own-model form with that reference (their Load, with its time limit, is the confirmation)."""
    ref = state.offered_model_file()
    if ref:
        st.button("Open “Your own model…” with this reference", key=state.EXP_IMPORT_OWN, on_click=_open_own_model_form,
                  args=(ref,), help="Fills in the sidebar form; the model's code runs only when you press Load there.")

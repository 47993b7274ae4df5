"""The Tune page's "Recipe (stages)" component: an ordered list of stages built from the page's own settings, each
pruning (and fine-tuning, as it says) the model the stage before left (core.config.PruneConfig.then). The list lives
in dashboard.state, per model; this module adds, moves, removes and clears stages in callbacks, draws the list as a
table, and composes it into the ONE config the Tune page's run job runs. Core validates every list: a stage that
cannot follow the ones before is refused with its one-line reason and the list stays as it was."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from core.config import PruneConfig
from core.errors import PruneLabError
from core.workflows import units
from dashboard import cache, state
from dashboard.components import messages
from dashboard.components.text import md

SHOWN_UNITS = 3  # a stage's cut lists its units and ratios when it has at most this many, else their range


def recipe(name: str, stages: list[PruneConfig], quantize: str = "none") -> PruneConfig:
    """The stages as one config: the first, for the model's weights (its fingerprint), with the rest as its `then`
    (no fingerprint: they prune the model the stage before left) and `quantize` beside it (core applies it after the
    last stage; a stage itself never carries it). PruneLabError if core refuses the order."""
    first, *rest = stages
    return replace(first, model_fingerprint=cache.spec(name).fingerprint, quantize=quantize, then=tuple(
        replace(s, model_fingerprint="", then=(), quantize="none") for s in rest))


def cuts_text(stage: PruneConfig) -> str:
    """What a stage cuts, in one line: its blocks; or its units and ratios ('fc1 30%, fc2 30%'), their range when
    there are many ('12 layers at 20–50%'); N:M and block shapes named."""
    technique = stage.technique
    if technique.takes_blocks:
        return f"blocks {', '.join(stage.remove_blocks)}" if stage.remove_blocks else "no block"
    cut = {u: r for u, r in stage.ratios.items() if r > 0}
    if technique.pattern == "nm":
        return f"{stage.pattern.n}:{stage.pattern.m} in {len(cut)} layer(s)"
    shape = f" ({stage.pattern.block[0]}×{stage.pattern.block[1]} blocks)" if technique.pattern == "block" else ""
    if not cut:
        return "nothing"
    if len(cut) <= SHOWN_UNITS:
        return ", ".join(f"{u} {100 * r:.0f}%" for u, r in cut.items()) + shape
    low, high = min(cut.values()), max(cut.values())
    spread = f"{100 * low:.0f}%" if round(100 * low) == round(100 * high) else f"{100 * low:.0f}–{100 * high:.0f}%"
    return f"{len(cut)} {technique.unit}s at {spread}{shape}"


def table(stages: list[PruneConfig]) -> pd.DataFrame:
    """One row per stage: its number, method, what it cuts, its fine-tuning epochs and repair."""
    rows = [{"stage": k, "method": s.method, "cuts": cuts_text(s), "fine-tune epochs": s.finetune.epochs,
             "repair": s.repair} for k, s in enumerate(stages, 1)]
    return pd.DataFrame(rows, columns=["stage", "method", "cuts", "fine-tune epochs", "repair"])


def inside_removed(stages: list[PruneConfig]) -> list[str]:
    """'stage 2: blocks.3.fc1, ...' for each stage that names layers inside a block an earlier stage removes
    (core.workflows.units.inside_removed finds them; core refuses such a recipe before it runs)."""
    named: dict[int, list[str]] = {}
    for k, unit, _block, _j in units.inside_removed(stages):
        named.setdefault(k, []).append(unit)
    return [f"stage {k}: {', '.join(found)}" for k, found in named.items()]


def _edit(name: str, stages: list[PruneConfig]) -> bool:
    """Keep stages as the model's recipe if core accepts them (or there are none); else say why, keep the old list."""
    try:
        if stages:
            recipe(name, stages)
    except PruneLabError as e:
        messages.say(state.STAGE_MESSAGE, name, "error", str(e))
        return False
    messages.clear(state.STAGE_MESSAGE, name)
    state.set_recipe_stages(name, stages)
    return True


def _add(name: str, stage: PruneConfig) -> None:
    """on_click of "Add current settings as a stage": the settings Tune would run now, appended."""
    stages = state.recipe_stages(name)
    if _edit(name, [*stages, replace(stage, then=(), quantize="none")]):  # int8 follows the recipe: not a stage
        state.pick_stage(len(stages) + 1)


def _move(name: str, number: int, by: int) -> None:
    """on_click of Move up (by -1) / down (+1): stage `number` (1-based) swaps with its neighbour. Any order is
    kept (nothing lost); one core refuses is said on the page, and Apply waits until it is put right."""
    stages, k = state.recipe_stages(name), number - 1
    if 0 <= k + by < len(stages):
        stages[k], stages[k + by] = stages[k + by], stages[k]
        state.set_recipe_stages(name, stages)
        state.pick_stage(number + by)
        messages.clear(state.STAGE_MESSAGE, name)


def _remove(name: str, number: int) -> None:
    stages = state.recipe_stages(name)
    del stages[number - 1]
    state.set_recipe_stages(name, stages)
    state.pick_stage(max(1, min(number, len(stages))))
    messages.clear(state.STAGE_MESSAGE, name)


def _clear(name: str) -> None:
    state.set_recipe_stages(name, [])
    messages.clear(state.STAGE_MESSAGE, name)


def _controls(name: str, stages: list[PruneConfig]) -> None:
    """The stage picker and its Move up / Move down / Remove, and Clear."""
    numbers = list(range(1, len(stages) + 1))
    state.keep_choice(state.STAGE_PICK, numbers)  # before the picker: a removed stage's number is not offered
    c1, c2, c3, c4, c5 = st.columns([2, 1, 1, 1, 1], vertical_alignment="bottom")
    picked = c1.selectbox("Stage", numbers, key=state.STAGE_PICK,
                          format_func=lambda k: f"{k}: {stages[k - 1].method}")
    c2.button("Move up", key=state.STAGE_UP, disabled=picked == 1, on_click=_move, args=(name, picked, -1))
    c3.button("Move down", key=state.STAGE_DOWN, disabled=picked == len(stages), on_click=_move,
              args=(name, picked, 1))
    c4.button("Remove", key=state.STAGE_REMOVE, on_click=_remove, args=(name, picked))
    c5.button("Clear all", key=state.STAGE_CLEAR, on_click=_clear, args=(name,))


def panel(name: str, current: PruneConfig | None, quantize: str = "none") -> tuple[bool, PruneConfig | None]:
    """The "Recipe (stages)" section. Returns (whether a recipe is listed, the recipe as one config — None when
    core refuses its order, said here in one line). current: the config Tune would run now (None if invalid);
    quantize: what follows the last stage ('int8' or 'none', the Tune page's checkbox)."""
    st.markdown("#### Recipe (stages)")
    stages = state.recipe_stages(name)
    st.button("Add current settings as a stage", key=state.STAGE_ADD, disabled=current is None, on_click=_add,
              args=(name, current), help="Appends the method, ratios, criterion, schedule, fine-tuning and repair set "
                                         "above; each stage prunes the model the stage before left.")
    messages.show(state.STAGE_MESSAGE, name)
    if not stages:
        st.caption("No stages: Apply runs the settings above. Add them as a stage to combine techniques, e.g. drop "
                   "a layer, then remove heads, then 30% of the weights with repair.")
        return False, None
    st.dataframe(table(stages), hide_index=True, width="stretch")
    _controls(name, stages)
    then_int8 = ", then quantises the result to int8" if quantize == "int8" else ""
    st.caption(f"Apply runs these {len(stages)} stage(s) in order as one recipe{then_int8}, not the settings above "
               "(add them first to include them). The Estimate above is of the settings above alone: a recipe's size "
               "and FLOPs are not estimated, since each stage cuts the model the stage before left; Results measures "
               "every stage.")
    if gone := inside_removed(stages):
        st.warning(md(f"These layers are inside blocks an earlier stage removes, so the run would stop there: "
                      f"{'; '.join(gone)}. Set their sliders to 0 and add the stage again."))
    try:
        return True, recipe(name, stages, quantize)
    except PruneLabError as e:
        st.error(md(e))
        return True, None

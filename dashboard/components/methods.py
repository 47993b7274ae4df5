"""Method-specific controls of the Tune page: each method's widgets in, a Choice (what the config prunes) out.

Mask methods (unstructured, N:M, block) zero weights inside dense tensors: size and dense speed stay.
Structural methods (channel, neuron, head, layer) take parts out of the network: it gets smaller and
faster. `controls` draws the widgets of one method and returns its Choice, or None when nothing can be
applied (the model has no unit for the method, or the pattern is invalid). What each method is, says and
offers comes from its registered object (core.methods): help, unit heading, the pattern it reads, sliders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from core import methods
from core.config import Pattern
from core.errors import PruneLabError
from core.graph import Unit
from core.hardware import LatencyTable
from core.prune.layers import rank_blocks
from dashboard import cache, state
from dashboard.components import messages
from dashboard.components.slider_groups import FLAT_MAX, grouped_sliders
from dashboard.components.sliders import ratio_sliders
from dashboard.components.text import md
from dashboard.state import MAX_RATIO


@dataclass(frozen=True)
class Choice:
    """What the controls chose: the config's ratios, blocks to remove (layer method) and mask pattern."""

    ratios: dict[str, float]
    remove_blocks: tuple[str, ...] = ()
    pattern: Pattern = field(default_factory=Pattern)

    def estimate_ratios(self) -> dict[str, float]:
        """What CostModel.estimate takes: the ratios, and 1.0 for every removed block."""
        return {**self.ratios, **dict.fromkeys(self.remove_blocks, 1.0)}


def controls(name: str, method: str, criterion: str, units: tuple[Unit, ...],
             lut: LatencyTable | None = None) -> Choice | None:
    """Draw the controls of `method` for model `name`; return what they chose (None: nothing to apply)."""
    technique = methods.get(method)
    if not units:
        st.info(f"{name} {technique.no_units}: there is nothing for {method} pruning here. Pick another method or "
                "model.")
        return None
    if technique.pattern == "nm":
        return _nm(name, units)
    if technique.takes_blocks:
        return _layer(name)
    pattern = _block_shape() if technique.pattern == "block" else Pattern()
    if pattern is None:
        return None
    if technique.global_scope:
        _scope(name, method, criterion)
    st.markdown(f"#### Ratio removed per {technique.unit_heading}")
    snap = technique.hardware_aware and state.hw_aware()
    layout = grouped_sliders if len(units) > FLAT_MAX else ratio_sliders
    ratios = layout(name, method, units, focus=state.focus(), table=lut, snap=snap)
    return Choice(ratios, pattern=pattern)


def _scope(name: str, method: str, criterion: str) -> None:
    """Per layer (each slider is its layer's share) or one global threshold across all layers."""
    scope = st.radio("Scope", ["per layer", "global threshold"], horizontal=True, key=state.SCOPE,
                     help="global threshold: one importance threshold over every weight of the model, at the "
                          "“All layers” share; layers then lose different shares (the total is the same).")
    if scope == "global threshold":
        st.button("Fill the sliders from one global threshold at the “All layers” value", key=state.FILL_GLOBAL,
                  on_click=_fill_global, args=(name, method, criterion))
        messages.show(state.GLOBAL_MESSAGE, name)


def _fill_global(name: str, method: str, criterion: str) -> None:
    """on_click callback (runs before the sliders are drawn): core.plan.global_ratios into the sliders."""
    tune = state.TuneState(name, method)
    ratio = tune.all_value()
    try:
        ratios = cache.global_ratios(name, ratio, criterion, seed=state.seed())
    except PruneLabError as e:
        messages.say(state.GLOBAL_MESSAGE, name, "error", str(e))
        return
    tune.set_sliders(ratios)
    capped = sorted(u for u, r in ratios.items() if r > MAX_RATIO)
    note = f" Capped at {MAX_RATIO} (the sliders' maximum): {', '.join(capped)}." if capped else ""
    messages.say(state.GLOBAL_MESSAGE, name, "warning" if capped else "success",
                 f"Sliders filled from one {criterion} threshold removing {ratio:.0%} of all weights.{note}")


def _nm(name: str, units: tuple[Unit, ...]) -> Choice | None:
    """N and M, and the layers that get the pattern (no sliders: the share is fixed at 1 - N/M)."""
    c1, c2, c3 = st.columns([1, 1, 4])
    n = int(c1.number_input("N (kept)", 1, 63, 2, key=state.NM_N, help="weights kept in every group of M"))
    m = int(c2.number_input("M (group)", 2, 64, 4, key=state.NM_M, help="consecutive input weights per group"))
    try:
        pattern = Pattern(n, m)
    except PruneLabError as e:
        st.error(md(e))
        return None
    eligible = cache.nm_layers(name)
    layers = c3.multiselect("Layers with the pattern", eligible, default=eligible, key=state.nm_layers_key(name),
                            help="Layers with a single input channel per group have nothing to choose within.")
    share = methods.nm_share(n, m)
    skipped = [u.name for u in units if u.name not in eligible]
    note = f" Cannot take it (one input channel): {md(', '.join(skipped))}." if skipped else ""
    st.caption(f"Each chosen layer keeps {n} of every {m} consecutive input weights: {share:.0%} zeroed. "
               f"2:4 is what NVIDIA sparse tensor cores run.{note}")
    return Choice(dict.fromkeys(layers, share), pattern=pattern)


def _block_shape() -> Pattern | None:
    """The (rows, cols) block that block pruning zeroes as a whole; None (with the reason) if invalid."""
    c1, c2, _ = st.columns([1, 1, 4])
    rows = int(c1.number_input("Block rows", 1, 256, 4, key=state.BLOCK_ROWS, help="output channels per block"))
    cols = int(c2.number_input("Block cols", 1, 256, 1, key=state.BLOCK_COLS, help="inputs per block"))
    try:
        return Pattern(block=(rows, cols))
    except PruneLabError as e:
        st.error(md(e))
        return None


def _layer(name: str) -> Choice:
    """One checkbox per removable block with its block influence; remove_blocks in score order."""
    scores = cache.block_scores(name)
    tune = state.TuneState(name, "layer")
    st.markdown("#### Blocks to remove")
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    c1.number_input("Remove the N least important", 0, len(scores), 1, key=state.drop_n_key(name))
    c2.button("Tick the N least important", key=state.DROP_LOWEST, on_click=_tick_lowest, args=(tune, scores))
    cols = st.columns(min(4, len(scores)))
    for i, (block, score) in enumerate(scores.items()):
        cols[i % len(cols)].checkbox(f"{md(block)} · 1−cos {score:.3f}", key=state.drop_key(name, block),
                                     help="Block influence: 1 − cosine similarity of the block's input and output "
                                          "on the calibration images. Lower = the block changes little = safer to "
                                          "remove.")
    st.caption("A removed block becomes the identity: its skip connection already carries the input past it.")
    return Choice({}, tuple(tune.dropped(rank_blocks(scores))))


def _tick_lowest(tune: state.TuneState, scores: dict[str, float]) -> None:
    """on_click callback: tick exactly the N blocks with the lowest scores."""
    tune.tick_blocks(scores, set(rank_blocks(scores)[: tune.drop_count()]))

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
from dashboard import cache
from dashboard.components.slider_groups import FLAT_MAX, grouped_sliders
from dashboard.components.sliders import MAX_RATIO, all_key, ratio_sliders, slider_key
from dashboard.components.text import md


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
    snap = technique.hardware_aware and st.session_state.get("hw-aware", False)
    layout = grouped_sliders if len(units) > FLAT_MAX else ratio_sliders
    ratios = layout(name, method, units, focus=st.session_state.get("focus"), table=lut, snap=snap)
    return Choice(ratios, pattern=pattern)


def _scope(name: str, method: str, criterion: str) -> None:
    """Per layer (each slider is its layer's share) or one global threshold across all layers."""
    scope = st.radio("Scope", ["per layer", "global threshold"], horizontal=True, key="scope",
                     help="global threshold: one importance threshold over every weight of the model, at the "
                          "“All layers” share; layers then lose different shares (the total is the same).")
    if scope == "global threshold":
        st.button("Fill the sliders from one global threshold at the “All layers” value", key="fill-global",
                  on_click=_fill_global, args=(name, method, criterion))
        kind, text = st.session_state.get("global-message", (None, None))
        if kind:
            getattr(st, kind)(md(text))


def _fill_global(name: str, method: str, criterion: str) -> None:
    """on_click callback (runs before the sliders are drawn): core.plan.global_ratios into the sliders."""
    state = st.session_state
    ratio = state.get(all_key(name, method), 0.0)
    try:
        ratios = cache.global_ratios(name, ratio, criterion, seed=int(state.get("seed", 0)))
    except PruneLabError as e:
        state["global-message"] = ("error", str(e))
        return
    for unit, r in ratios.items():
        state[slider_key(name, method, unit)] = min(MAX_RATIO, r)
    capped = sorted(u for u, r in ratios.items() if r > MAX_RATIO)
    note = f" Capped at {MAX_RATIO} (the sliders' maximum): {', '.join(capped)}." if capped else ""
    state["global-message"] = ("warning" if capped else "success",
                               f"Sliders filled from one {criterion} threshold removing {ratio:.0%} of all "
                               f"weights.{note}")


def _nm(name: str, units: tuple[Unit, ...]) -> Choice | None:
    """N and M, and the layers that get the pattern (no sliders: the share is fixed at 1 - N/M)."""
    c1, c2, c3 = st.columns([1, 1, 4])
    n = int(c1.number_input("N (kept)", 1, 63, 2, key="nm-n", help="weights kept in every group of M"))
    m = int(c2.number_input("M (group)", 2, 64, 4, key="nm-m", help="consecutive input weights per group"))
    try:
        pattern = Pattern(n, m)
    except PruneLabError as e:
        st.error(md(e))
        return None
    eligible = cache.nm_layers(name)
    layers = c3.multiselect("Layers with the pattern", eligible, default=eligible, key=f"nm-layers|{name}",
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
    rows = int(c1.number_input("Block rows", 1, 256, 4, key="block-rows", help="output channels per block"))
    cols = int(c2.number_input("Block cols", 1, 256, 1, key="block-cols", help="inputs per block"))
    try:
        return Pattern(block=(rows, cols))
    except PruneLabError as e:
        st.error(md(e))
        return None


def _layer(name: str) -> Choice:
    """One checkbox per removable block with its block influence; remove_blocks in score order."""
    scores = cache.block_scores(name)
    keys = {b: f"drop|{name}|{b}" for b in scores}
    st.markdown("#### Blocks to remove")
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    c1.number_input("Remove the N least important", 0, len(scores), 1, key=f"drop-n|{name}")
    c2.button("Tick the N least important", key="drop-lowest", on_click=_tick_lowest, args=(name, keys, scores))
    cols = st.columns(min(4, len(scores)))
    for i, (block, score) in enumerate(scores.items()):
        cols[i % len(cols)].checkbox(f"{md(block)} · 1−cos {score:.3f}", key=keys[block],
                                     help="Block influence: 1 − cosine similarity of the block's input and output "
                                          "on the calibration images. Lower = the block changes little = safer to "
                                          "remove.")
    st.caption("A removed block becomes the identity: its skip connection already carries the input past it.")
    return Choice({}, tuple(b for b in rank_blocks(scores) if st.session_state.get(keys[b])))


def _tick_lowest(name: str, keys: dict[str, str], scores: dict[str, float]) -> None:
    """on_click callback: tick exactly the N blocks with the lowest scores."""
    lowest = set(rank_blocks(scores)[: int(st.session_state[f"drop-n|{name}"])])
    for block, key in keys.items():
        st.session_state[key] = block in lowest

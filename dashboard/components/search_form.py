"""The Search page's form: the grid (FLOP-reduction targets, the budget solver's strategies, seeds), fine-tuning
epochs, hardware-aware solving and the executor (with a Ray cluster's address) as widgets, and the SearchSpec and
executor choice they make. core.search_spec.SearchSpec validates the values (its error is one line); the widgets
keep what was typed either way."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core import executors, executors_ray
from core.allocate import STRATEGIES
from core.errors import PruneLabError
from core.search_spec import SearchSpec
from core.workflows.defaults import PAGE_FINETUNE_EPOCHS
from dashboard import state
from dashboard.components.text import md

DEFAULT_TARGETS = "2, 3"  # FLOP-reduction factors: half and a third of the FLOPs
DEFAULT_STRATEGIES = ("uniform", "global")  # the sensitivity strategy adds a sweep first
STRATEGY_HELP = {"uniform": "the same ratio in every layer", "global": "one threshold over every layer's scores",
                 "sensitivity": "ratios from the sensitivity sweep (run once first, cached)"}


@dataclass(frozen=True)
class SearchRequest:
    """What Start hands to the search job: the spec and where its trials run."""

    search: SearchSpec
    executor: str
    address: str | None


def draw(disabled: bool) -> None:
    """The form's widgets (values kept in the session under dashboard.state's keys)."""
    c = st.columns([1.4, 2, 0.8, 0.8])
    c[0].text_input("Targets: FLOP reduction factors", DEFAULT_TARGETS, key=state.SEARCH_TARGETS, disabled=disabled,
                    help="Comma-separated; 2 = half the FLOPs. Each is solved by each strategy with each seed.")
    c[1].multiselect("Strategies", list(STRATEGIES), list(DEFAULT_STRATEGIES), key=state.SEARCH_STRATEGIES,
                     disabled=disabled, help="\n".join(f"- **{s}**: {STRATEGY_HELP.get(s, '')}" for s in STRATEGIES))
    c[2].number_input("Seeds", 1, 100, 1, key=state.SEARCH_SEEDS, disabled=disabled,
                      help="Seeds 0 … N-1 for every target and strategy (calibration, fine-tuning order).")
    c[3].number_input("Fine-tune epochs", 0, 1000, PAGE_FINETUNE_EPOCHS, key=state.SEARCH_EPOCHS, disabled=disabled,
                      help="Epochs of the model's own recipe after each cut (0: measure the cut model as it is).")
    c = st.columns([1.4, 1.2, 2])
    c[0].checkbox("Hardware-aware widths", False, key=state.SEARCH_HW, disabled=disabled,
                  help="Solve for channel widths the runtime is fast at (timed on this machine).")
    c[1].radio("Executor", list(executors.NAMES), key=state.SEARCH_EXECUTOR, horizontal=True, disabled=disabled,
               help="local: one trial after another in the job's process; ray: trials on a Ray cluster's workers.")
    if state.get(state.SEARCH_EXECUTOR) == "ray":
        c[2].text_input("Ray cluster address", "", key=state.SEARCH_ADDRESS, disabled=disabled,
                        placeholder="empty: $RAY_ADDRESS, else a local cluster",
                        help="e.g. 10.0.0.5:6379 to join a running cluster.")
        if missing := executors_ray.ray_missing():
            c[2].caption(md(missing))


def request(model: str) -> SearchRequest:
    """The form's values as a checked request; a PruneLabError (one line) names what is wrong."""
    search = SearchSpec(model, parse_targets(state.get(state.SEARCH_TARGETS, DEFAULT_TARGETS)),
                        tuple(state.get(state.SEARCH_STRATEGIES, DEFAULT_STRATEGIES)),
                        tuple(range(int(state.get(state.SEARCH_SEEDS, 1)))),
                        int(state.get(state.SEARCH_EPOCHS, PAGE_FINETUNE_EPOCHS)),
                        bool(state.get(state.SEARCH_HW, False)))
    name = state.get(state.SEARCH_EXECUTOR) or executors.NAMES[0]
    address = (state.get(state.SEARCH_ADDRESS) or "").strip() or None if name == "ray" else None
    executors.get(name, address).close()  # unknown names and a missing Ray extra refuse here, in one line
    return SearchRequest(search, name, address)


def parse_targets(text: str) -> tuple[float, ...]:
    """'1.5, 2, 3' as numbers (SearchSpec checks them as targets: at least one, each a factor of at least 1)."""
    values = []
    for part in str(text).replace(";", ",").split(","):
        if part.strip():
            try:
                values.append(float(part))
            except ValueError:
                raise PruneLabError(f"targets: {part.strip()!r} is not a number (give FLOP reduction factors, "
                                    "e.g. 1.5, 2, 3)") from None
    return tuple(values)

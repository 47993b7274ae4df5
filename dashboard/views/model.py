"""Model page: baseline measurements, the layer table, the channel-importance heatmap and, for models
with attention, the heads' importance; for any model, the layers PruneLab leaves alone, and for a user's
model loaded from a pickle, a standing reminder that its code ran."""

from __future__ import annotations

import streamlit as st
from torch import nn

from core import methods
from core.graph import unsupported_layers
from core.importance import REGISTRY, NotApplicable
from core.structure import attention_modules
from dashboard import cache, state
from dashboard.components import criteria
from dashboard.components.charts import head_heatmap, importance_heatmap
from dashboard.components.format import metric_row
from dashboard.components.heat import MAX_COLS
from dashboard.components.heat_controls import grouped_view, handle_pick
from dashboard.components.text import md

SHOWN_UNSUPPORTED = 12  # layers listed by name; the rest are counted


def render(name: str) -> None:
    spec = cache.spec(name)
    shown = cache.display_name(name)
    st.subheader(md(spec.summary if shown in spec.summary else f"{shown} — {spec.summary}"))  # user models name it
    _provenance(name)
    _left_alone(spec.model)
    base = cache.baseline(name).metrics
    metric_row(base)
    data = (f"test accuracy on {len(spec.split.test_y):,} held-out images" if spec.has_data else
            "no data set (random weights, for size and latency work): accuracy n/a")
    st.caption(f"Measured: {data}; latency in {base['runtime']} with {base['latency_threads']} thread(s), median "
               "of repeated runs after warm-up.")

    st.markdown("#### Importance: which channels carry weight")
    c1, c2, c3 = st.columns([2, 1, 1])
    granularity = c1.radio("Rows", ["channel groups", "layers"], horizontal=True, key=state.HEAT_ROWS,
                           help="Channel groups: channels that must be cut together (Torch-Pruning's dependency "
                                "graph); scores are group magnitudes. Layers: each conv/linear's output channels.")
    offered = criteria.offered(REGISTRY, spec.has_data)
    criteria.keep_offered(state.HEAT_CRITERION, offered)  # a data criterion from another model falls back
    criterion = c2.selectbox("Criterion", offered, key=state.HEAT_CRITERION,
                             format_func=lambda c: REGISTRY[c].label,
                             help="\n".join(f"- **{REGISTRY[c].label}**: {REGISTRY[c].summary}" for c in offered)
                             + criteria.note(spec.has_data))
    sort = c3.toggle("Sort channels", value=True, key=state.HEAT_SORT)
    method = "channel" if granularity == "channel groups" else "unstructured"
    try:
        scores = cache.importance_scores(name, method, criterion)
    except NotApplicable as e:
        st.info(md(e))
    else:
        grouped = grouped_view(len(scores), state.HEAT_DETAIL)
        event = st.plotly_chart(importance_heatmap(scores, sort=sort, grouped=grouped), width="stretch",
                                key=state.HEATMAP, on_select="rerun", selection_mode="points")
        handle_pick(event, grouped, state.HEATMAP)
        data = " on 512 seeded training images" if REGISTRY[criterion].uses_data else ""
        st.caption(f"{REGISTRY[criterion].label}{data}. Each row is scaled so its strongest channel is 1; dark "
                   "cells are what pruning by this criterion removes first." + _binned_note(scores, grouped))

    if attention_modules(spec.model):
        _heads(name, spec.has_data)

    st.markdown("#### Layers")
    st.dataframe(cache.layers(name), hide_index=True, width="stretch")


def _binned_note(scores: dict, grouped: bool) -> str:
    """What a binned or grouped heatmap shows, in a sentence (nothing for the exact view)."""
    binned = max((len(v) for v in scores.values()), default=0) > MAX_COLS
    note = (f" Wide layers are binned: each column is the mean of an equal share of the layer's channels "
            f"({MAX_COLS} columns)." if binned else "")
    if grouped:
        note += " Rows are stages or blocks (the mean of their units); click one to see its sliders on Tune."
    return note


def _provenance(name: str) -> None:
    """For a user model loaded with trust_pickle: a warning that stays while the model is shown."""
    args = cache.user_model(name)
    if args is not None and args.trust_pickle:
        st.warning(f"{md(args.ref)} was loaded with “Trust this pickle”: unpickling ran the code the file carries, "
                   "with this server's permissions. Keep using it only if you trust where the file came from.",
                   icon="⚠️")


def _left_alone(model: nn.Module) -> None:
    """The layers with weights that no method prunes (core.graph.unsupported_layers), if there are any."""
    found = unsupported_layers(model)
    if not found:
        return
    shown = ", ".join(f"{n or '(model)'} ({t})" for n, t in found[:SHOWN_UNSUPPORTED])
    more = f" and {len(found) - SHOWN_UNSUPPORTED} more" if len(found) > SHOWN_UNSUPPORTED else ""
    st.info(f"left alone: {md(shown)}{more} — no method prunes these layer types; they keep all their weights.")


def _heads(name: str, has_data: bool) -> None:
    """Attention modules x heads importance, by a selectable head criterion."""
    st.markdown("#### Importance: which attention heads carry weight")
    head_criteria = list(methods.get("head").criteria())
    default = head_criteria.index("taylor" if has_data else "l1")  # taylor on noise inputs means little
    column, _ = st.columns([1, 3])
    criterion = column.selectbox("Head criterion", head_criteria, index=default, key=state.HEAD_CRITERION,
                                 help="taylor: |dL/dgate| of a gate on each head's output (Michel et al. 2019); "
                                      "l1/l2: norm of the head's q/k/v rows and output-projection columns; random.")
    st.plotly_chart(head_heatmap(cache.head_scores(name, criterion)), width="stretch", key=state.HEAD_HEATMAP)
    st.caption("Raw scores (not scaled per row): head pruning removes each module's lowest-scoring heads first.")

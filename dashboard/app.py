"""PruneLab dashboard: `prunelab dashboard` (or `streamlit run dashboard/app.py`).

Pick a model in the sidebar (or load your own there); Model shows what it is and which channels matter,
Sensitivity what each layer costs in accuracy when pruned, Tune sets per-layer ratios (by hand or by the
budget solver) with live estimates and runs the experiment, Results and Export show and hand out what was
measured, Experiments lists, compares and manages every recorded run.
Pages only draw; core computes; dashboard/cache.py owns what is shared between sessions.
"""

from __future__ import annotations

import os

import streamlit as st

from core.errors import PruneLabError
from dashboard import cache, uploads
from dashboard.components.own_model import pick_model
from dashboard.components.text import md
from dashboard.views import experiments, export, model, results, sensitivity, tune

DEFAULT_MODEL = "mnist-resnet"


def main() -> None:
    st.set_page_config(page_title="PruneLab", page_icon="✂️", layout="wide")
    try:
        cache.clean_uploads(str(uploads.folder()))
    except PruneLabError as e:
        st.error(md(e))
    st.sidebar.title("✂️ PruneLab")
    name = pick_model(os.environ.get("PRUNELAB_MODEL", DEFAULT_MODEL))
    st.sidebar.caption("Explore pruning trade-offs: every number is measured, or labelled as an estimate.")
    tabs = st.tabs(["Model", "Sensitivity", "Tune", "Results", "Export", "Experiments"])
    for tab, view in zip(tabs, (model, sensitivity, tune, results, export, experiments), strict=True):
        with tab:
            try:
                view.render(name)
            except PruneLabError as e:
                st.error(md(e))


main()

"""PruneLab dashboard: `prunelab dashboard` (or `streamlit run dashboard/app.py`).

Pick a model in the sidebar (or load your own there); Model shows what it is and which channels matter,
Sensitivity what each layer costs in accuracy when pruned, Tune sets per-layer ratios (by hand or by the
budget solver) with live estimates and runs the experiment, Results and Export show and hand out what was
measured, Experiments lists, compares and manages every recorded run, Search runs a grid of budget-solve -> apply
trials in the background and shows them as they land.

Each page is a script under dashboard/app_pages/ at its own URL (/model, /tune, ...), registered with
`st.navigation`: a rerun runs this file (the sidebar) and the shown page only. (Not `pages/`: Streamlit takes
a folder of that name beside the entry script for its older multipage layout and may run a page from it
without this file, as AppTest does on every rerun.) The chosen model and run are
kept by dashboard.state and mirrored in the URL, so a link or a reload opens the same model and run.
Pages only draw; core computes; dashboard/cache.py owns what is shared between sessions.
"""

from __future__ import annotations

import os

import streamlit as st

from core.errors import PruneLabError
from dashboard import cache, state, uploads
from dashboard.components.own_model import pick_model
from dashboard.components.text import md

DEFAULT_MODEL = "mnist-resnet"
PAGES = (("model", "Model", ":material/category:"), ("sensitivity", "Sensitivity", ":material/insights:"),
         ("tune", "Tune", ":material/tune:"), ("results", "Results", ":material/analytics:"),
         ("export", "Export", ":material/download:"), ("experiments", "Experiments", ":material/table_view:"),
         ("search", "Search", ":material/travel_explore:"))
# Material icons ship with Streamlit's own font (emoji need a system emoji font, which servers often lack)


def _sidebar() -> None:
    """The title, the model choice (a new session starts on the URL's model) and the tagline."""
    st.sidebar.title("✂️ PruneLab")
    state.keep_settings()
    state.restore_run()
    state.show_model(pick_model(state.initial_model(os.environ.get("PRUNELAB_MODEL", DEFAULT_MODEL))))
    st.sidebar.caption("Explore pruning trade-offs: every number is measured, or labelled as an estimate.")


def main() -> None:
    st.set_page_config(page_title="PruneLab", page_icon="✂️", layout="wide")
    try:
        cache.clean_uploads(str(uploads.folder()))
    except PruneLabError as e:
        st.error(md(e))
    _sidebar()
    pages = [st.Page(f"app_pages/{slug}.py", title=title, icon=icon, url_path=slug, default=slug == "model")
             for slug, title, icon in PAGES]
    page = st.navigation(pages, position="top")
    state.sync_url()  # the model now: a page that stops or reruns early still leaves the URL right
    page.run()
    state.sync_url()  # the run the page may have selected


main()

"""Model page (/model, the default): where to go next, then what the model is."""

import streamlit as st

from dashboard import cache
from dashboard.app_pages import draw
from dashboard.views import model


def next_steps(name: str) -> None:
    """What to do after looking at the model: a sweep first where there is data to measure accuracy on."""
    box = st.container(border=True)
    if cache.spec(name).has_data:
        box.markdown("**Next:** measure how much accuracy each layer costs when pruned, then set ratios "
                     "(by hand or with the budget solver) and apply them.")
        box.page_link("app_pages/sensitivity.py", label="Sensitivity: run a sweep", icon=":material/insights:")
    else:
        box.markdown("**Next:** this model has no data set, so accuracy cannot be measured here; set ratios and "
                     "see what they remove in size, FLOPs and latency.")
    box.page_link("app_pages/tune.py", label="Tune: set ratios and apply", icon=":material/tune:")


def page(name: str) -> None:
    next_steps(name)
    model.render(name)


draw(page)

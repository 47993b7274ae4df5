"""Tune page (/tune): method, per-layer ratios (by hand or the budget solver) with live estimates, Apply."""

from dashboard.app_pages import draw
from dashboard.views import tune

draw(tune.render)

"""Experiments page (/experiments): every recorded run of the model, compared and managed."""

from dashboard.app_pages import draw
from dashboard.views import experiments

draw(experiments.render)

"""Sensitivity page (/sensitivity): what each layer costs in accuracy when pruned, and what pruning it buys."""

from dashboard.app_pages import draw
from dashboard.views import sensitivity

draw(sensitivity.render)

"""Search page (/search): a grid of budget-solve -> apply trials run in the background, its trials as they land."""

from dashboard.app_pages import draw
from dashboard.views import search

draw(search.render)

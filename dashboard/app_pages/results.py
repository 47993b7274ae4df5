"""Results page (/results): a saved run measured against the baseline."""

from dashboard.app_pages import draw
from dashboard.views import results

draw(results.render)

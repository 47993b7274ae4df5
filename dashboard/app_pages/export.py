"""Export page (/export): a saved run's config, ONNX files and measurements, and its deployable forms."""

from dashboard.app_pages import draw
from dashboard.views import export

draw(export.render)

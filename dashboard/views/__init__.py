"""One module per page of the dashboard; each has render(model_name)."""

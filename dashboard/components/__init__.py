"""Widgets that turn into config values, and the charts the pages draw."""

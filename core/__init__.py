"""PruneLab engine: pruning, measurement and export. Never imports streamlit."""

__version__ = "0.1.0"

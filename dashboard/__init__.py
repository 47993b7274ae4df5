"""PruneLab's Streamlit front end: pages draw, core computes."""

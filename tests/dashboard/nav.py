"""How tests reach a dashboard page: the app's pages are files under dashboard/app_pages/, registered by app.py with
st.navigation; AppTest opens the default page (Model) and goes to another by its file, as a link would."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ("model", "sensitivity", "tune", "results", "export", "experiments", "search")


def goto(at: AppTest, page: str) -> AppTest:
    """Show `page` (one of PAGES) and run the app there."""
    return at.switch_page(f"app_pages/{page}.py").run()

"""How browser tests reach a dashboard page: its link in the top navigation (each page has its own URL,
/sensitivity, /tune, ...; the Model page is the root)."""

from __future__ import annotations


def go(page, name: str) -> None:
    """Click the top navigation's link to page `name` (its title) and wait until the browser is at its URL."""
    page.get_by_test_id("stTopNavLink").filter(has_text=name).click()
    page.wait_for_url(f"**/{name.lower()}**", timeout=30_000)

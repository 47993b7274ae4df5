"""How browser tests reach a dashboard page: its link in the top navigation (each page has its own URL,
/sensitivity, /tune, ...; the Model page is the root)."""

from __future__ import annotations


def go(page, name: str) -> None:
    """Click the top navigation's link to page `name` (its title) and wait until the browser is at its URL."""
    page.get_by_test_id("stTopNavLink").filter(has_text=name).click()
    page.wait_for_url(f"**/{name.lower()}**", timeout=30_000)


def set_number(page, label: str, value: int, timeout_ms: int = 120_000) -> None:
    """Type `value` into the number input labelled `label` and commit it (Enter), as a user would; waits for the
    box (a first page load on a busy machine is slow), then until it shows the value."""
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    box.fill(str(value), timeout=timeout_ms)
    box.press("Enter")
    expect(box).to_have_value(str(value), timeout=30_000)

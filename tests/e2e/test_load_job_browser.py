"""Loading your own model in a real browser against `prunelab dashboard`: a factory that never returns shows the
elapsed time and a Cancel button; Cancel kills its process (and the one it started) and says so in one line; a
load whose tab is closed is killed too, with nobody clicking anything. Processes are checked by the pids the
factory writes."""

from __future__ import annotations

import sys

import pytest

from tests.e2e.test_browser import free_port
from tests.e2e.test_no_outside_requests import browser_page, own_model, serve, stop
from tests.test_probe import FOREVER, alive, gone, pids_of
from tests.test_user_models import write

pytestmark = pytest.mark.browser


def test_cancel_and_closing_the_tab_stop_a_load_that_never_ends(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    pidfile = tmp_path / "pids"
    ref = f"{write(tmp_path, 'forever.py', FOREVER.format(pids=str(pidfile)))}:build"
    port = free_port()
    proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", "digits-mlp", "--port", str(port)],
                 tmp_path / "home", port)
    try:
        with sync_playwright() as pw:
            browser, page = browser_page(pw)
            page.goto(f"http://127.0.0.1:{port}")
            expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=120_000)
            sidebar = page.get_by_test_id("stSidebar")

            own_model(page, expect, ref)
            cancel = sidebar.get_by_role("button", name="Cancel")
            expect(cancel).to_be_visible(timeout=30_000)
            expect(sidebar.get_by_text("in a separate process")).to_be_visible(timeout=30_000)  # elapsed time
            pids = pids_of(pidfile)
            assert all(alive(p) for p in pids)
            cancel.click()
            message = sidebar.get_by_test_id("stAlert").filter(has_text="was cancelled")
            expect(message).to_be_visible(timeout=30_000)
            assert "\n" not in message.inner_text().strip()
            assert gone(pids), "Cancel left the load running"
            expect(page.get_by_text("Test accuracy").first).to_be_visible()  # digits-mlp still shown

            pidfile.unlink()
            sidebar.get_by_role("button", name="Load", exact=True).click()
            pids = pids_of(pidfile)
            page.close()  # the session ends; nobody cancels
            assert gone(pids, seconds=60), "a load outlived its closed tab"
            browser.close()
    finally:
        stop(proc)

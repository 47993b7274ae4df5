"""The Search page in a real browser: reached by its navigation link, a tiny search (one FLOP target x the default
strategies, no fine-tuning) started with its button runs in a worker process, and its trials table and Pareto
chart appear with every trial done."""

from __future__ import annotations

import json
import sys

import pytest

from tests.e2e.nav import go
from tests.e2e.test_browser import free_port
from tests.e2e.test_no_outside_requests import browser_page, serve, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_tiny_search_completes_from_the_search_page(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home, port = tmp_path / "home", free_port()
    proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", "digits-mlp", "--port", str(port)],
                 home, port)
    try:
        with sync_playwright() as pw:
            browser, page = browser_page(pw)
            page.goto(f"http://127.0.0.1:{port}/")
            go(page, "Search")
            targets = page.get_by_label("Targets: FLOP reduction factors", exact=True)
            targets.fill("2")
            targets.press("Enter")
            epochs = page.get_by_label("Fine-tune epochs", exact=True)
            epochs.fill("0")
            epochs.press("Enter")
            page.get_by_role("button", name="Start search").click(timeout=60_000)
            expect(page.get_by_test_id("stProgress").first).to_be_visible(timeout=60_000)
            worker = json.loads(next((home / "jobs" / "search").glob("*/*/pid.json")).read_text())
            assert worker["pid"] != proc.pid  # the search runs in a worker, not in the server

            expect(page.get_by_text("2 of 2 trials done").first).to_be_visible(timeout=600_000)
            expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            record = json.loads(next((home / "runs").glob("*/search.json")).read_text())
            assert record["status"] == "done" and [t["status"] for t in record["trials"]] == ["done", "done"]
            assert [(t["target"], t["strategy"]) for t in record["trials"]] == [(2.0, "uniform"), (2.0, "global")]
            browser.close()
    finally:
        stop(proc)

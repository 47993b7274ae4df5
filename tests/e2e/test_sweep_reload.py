"""A sensitivity sweep started from its page in a real browser runs in a worker process: reloading the page (and
opening it in a second tab) while it runs shows the same job's progress with its time so far, offers no second
start, and no second worker starts; the heatmap appears when it ends. Processes are checked by the pid the job
slot records."""

from __future__ import annotations

import json
import sys
import time

import pytest

from core.processes import alive
from tests.e2e.nav import set_number
from tests.e2e.test_browser import free_port
from tests.e2e.test_no_outside_requests import browser_page, serve, stop

pytestmark = pytest.mark.browser
EVAL_IMAGES = 300  # of the default 1,000: the sweep still runs long enough (81 points) to reload and open a tab


def _worker(home) -> dict:
    return json.loads(next((home / "jobs" / "sweep").glob("*/*/pid.json")).read_text())


def test_reloading_during_a_sweep_shows_its_progress_and_starts_no_second_sweep(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home, port = tmp_path / "home", free_port()
    proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", "mnist-resnet", "--port", str(port)],
                 home, port)
    try:
        with sync_playwright() as pw:
            browser, page = browser_page(pw)
            page.goto(f"http://127.0.0.1:{port}/sensitivity")
            set_number(page, "Eval images", EVAL_IMAGES)
            page.get_by_role("button", name="Run sensitivity sweep").click(timeout=120_000)
            progress = page.get_by_test_id("stProgress").first
            expect(progress).to_be_visible(timeout=60_000)
            worker = _worker(home)
            assert worker["pid"] != proc.pid and alive(worker["pid"], worker["started"])

            page.reload()
            expect(page.get_by_test_id("stProgress").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("so far").first).to_be_visible(timeout=30_000)
            second = browser.new_page()
            second.goto(f"http://127.0.0.1:{port}/sensitivity")
            expect(second.get_by_test_id("stProgress").first).to_be_visible(timeout=60_000)
            for p in (page, second):
                assert p.get_by_role("button", name="Run sensitivity sweep").count() == 0 or \
                    p.get_by_role("button", name="Run sensitivity sweep").is_disabled()
            assert _worker(home) == worker  # the same worker: nothing started a second sweep
            assert len(list((home / "jobs" / "sweep").glob("*/*/request.json"))) == 1

            expect(page.get_by_text("accuracy drop").first).to_be_visible(timeout=600_000)
            # the outcome is written just before the worker exits: on a loaded machine the exit can lag the page
            deadline = time.monotonic() + 60
            while alive(worker["pid"], worker["started"]) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not alive(worker["pid"], worker["started"]), "the worker outlived its finished job by 60 s"
            browser.close()
    finally:
        stop(proc)

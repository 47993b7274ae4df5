"""One real-browser journey: the dashboard served by `prunelab dashboard`, driven in Debian's chromium
through playwright (never `playwright install`): open it, move a layer slider and see the estimate
change, apply (pruning, fine-tuning and measuring run in the background while the page polls), see the
comparison, the pruned graph in Netron and the downloads, all without a request leaving this machine.
Screenshots of each page go to tests/artifacts/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`prunelab dashboard` on a free port, bound to 127.0.0.1, with a private workspace."""
    port = free_port()
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", "--model", "mnist-resnet",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_browser_opens_app_moves_slider_applies_and_saves_screenshots(server):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make test` installs it (apt-get install chromium chromium-driver)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
            ("http://127.0.0.1", "data:", "blob:", "about:")) else None)
        page.goto(server)
        expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=120_000)
        expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)  # the heatmap
        page.screenshot(path=str(ARTIFACTS / "model-page.png"), full_page=True)

        page.get_by_role("tab", name="Tune").click()
        estimate = page.get_by_test_id("stMetric").filter(has_text="Parameters (estimate)")
        expect(estimate).to_be_visible(timeout=60_000)
        before = estimate.get_by_test_id("stMetricValue").inner_text()
        slider = page.get_by_role("slider").nth(1)  # the first per-layer slider (0 is "All layers")
        slider.focus()
        for _ in range(30):  # 30 steps of 0.01 -> 0.30
            slider.press("ArrowRight")
        expect(estimate.get_by_test_id("stMetricValue")).not_to_have_text(before, timeout=30_000)
        after = estimate.get_by_test_id("stMetricValue").inner_text()
        page.screenshot(path=str(ARTIFACTS / "tune-page.png"), full_page=True)

        # apply runs in the background; the page polls it and announces the saved run
        page.get_by_role("button", name="Apply and measure").click()
        expect(page.get_by_text("measured and saved")).to_be_visible(timeout=240_000)
        page.get_by_role("tab", name="Results").click()
        expect(page.get_by_text("% of baseline (lower is better)")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "results-page.png"), full_page=True)

        # the pruned graph: width chart always, Netron on request (consent pre-answered, nothing outside)
        expect(page.get_by_text("The pruned network")).to_be_visible()
        page.get_by_text("Show the exported graph in Netron").click()
        viewer = page.frame_locator("iframe[title='st.iframe']").first.frame_locator("#netron")
        expect(viewer.locator("svg#canvas g.node").first).to_be_attached(timeout=60_000)
        assert viewer.locator("svg#canvas g.node").count() > 10
        page.screenshot(path=str(ARTIFACTS / "netron.png"), full_page=True)
        page.get_by_role("tab", name="Export").click()
        expect(page.get_by_test_id("stDownloadButton").filter(has_text="model.onnx")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "export-page.png"), full_page=True)
        assert page.get_by_test_id("stException").count() == 0
        browser.close()
    assert outside == [], f"the page reached outside this machine: {outside[:5]}"
    assert before != after
    assert (ARTIFACTS / "tune-page.png").stat().st_size > 10_000

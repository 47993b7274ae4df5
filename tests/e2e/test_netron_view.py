"""The Netron viewer in Debian's chromium (issue 11, item 8): embedded with st.iframe (the supported API since
streamlit.components.v1.html was deprecated), it draws the run's graph from its own server on 127.0.0.1, no
request leaves the machine, and that server refuses a request carrying another site's Host header — what a
DNS-rebinding page would send."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys

import pytest

from tests.e2e.nav import go
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port
from tests.e2e.test_no_outside_requests import serve, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def status(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/data/model.onnx", headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_netron_shows_the_graph_and_refuses_other_hosts(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "core.cli", "prune", "digits-mlp", "--method", "channel",
                           "--ratio", "0.3", "--finetune-epochs", "0", "--out", str(home / "runs" / "cli-run")],
                          cwd=ROOT, env={**os.environ, "PRUNELAB_HOME": str(home)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", "digits-mlp", "--port", str(port)],
                 home, port)
    outside: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
                ("http://127.0.0.1", "data:", "blob:", "about:")) else None)
            page.goto(f"http://127.0.0.1:{port}")
            go(page, "Results")
            page.get_by_text("Show the exported graph in Netron").click()
            viewer = page.frame_locator("iframe[title^='Netron graph']").first
            expect(viewer.locator("svg#canvas g.node").first).to_be_attached(timeout=120_000)
            nodes = viewer.locator("svg#canvas g.node").count()
            caption = page.get_by_text("Netron serving this run's model.onnx on 127.0.0.1:").inner_text()
            browser.close()
        netron = int(re.search(r"127\.0\.0\.1:(\d+)", caption).group(1))
        answers = {host: status(netron, host) for host in (f"127.0.0.1:{netron}", "evil.example",
                                                            f"evil.example:{netron}")}
    finally:
        stop(proc)
    log = proc.stdout.read().decode()
    assert "will be removed after" not in log, log  # Streamlit's deprecation warning for components.v1.html
    assert nodes >= 3  # digits-mlp: three linear layers and their activations
    assert outside == []
    assert answers == {f"127.0.0.1:{netron}": 200, "evil.example": 403, f"evil.example:{netron}": 403}

"""The Export page's PyTorch downloads in a real browser: a recorded run's model.pt2 (made on the server when the
button is clicked, on a thread of its own) and model.safetensors arrive as files, the .pt2 runs with torch alone and
equals the run's model.onnx in onnxruntime, and the weights are the run's own bytes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from tests.e2e.nav import go
from tests.e2e.servers import wait_until_healthy
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, download, free_port

pytestmark = pytest.mark.browser


@pytest.fixture
def run_and_server(tmp_path):
    """A digits-mlp channel run recorded in a private workspace, and `prunelab dashboard` on digits-mlp."""
    home = tmp_path / "home"
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    folder = home / "runs" / "mine"
    done = subprocess.run([sys.executable, "-m", "core.cli", "prune", "digits-mlp", "--method", "channel", "--ratio",
                           "0.5", "--finetune-epochs", "0", "--latency-batches", "1", "--out", str(folder)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", "--model", "digits-mlp", "--port",
                             str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(proc, port)
    yield folder, url
    proc.terminate()
    proc.wait(timeout=20)


def test_pt2_and_weights_download_from_the_export_page(run_and_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    folder, url = run_and_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(url)
        expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=120_000)
        go(page, "Export")
        expect(page.get_by_test_id("stDownloadButton").filter(has_text="model.pt2")).to_be_visible(timeout=60_000)
        pt2 = download(page, "model.pt2", tmp_path)
        weights = download(page, "model.safetensors", tmp_path)
        assert page.get_by_test_id("stException").count() == 0
        browser.close()
    assert weights.read_bytes() == (folder / "model.safetensors").read_bytes()
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))  # digits-mlp takes 8x8 images, flattened
    got = torch.export.load(pt2).module()(x).detach().numpy()
    sess = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(got - sess.run(None, {"input": x.numpy()})[0]).max() <= 1e-4

"""The whole journey in a real browser: the dashboard served by `prunelab dashboard`, driven in Debian's chromium
through playwright (never `playwright install`). Open the app on mnist-resnet, run a sensitivity sweep (progress
visible) and see its heatmap, ask the solver for 2x fewer FLOPs, move one layer slider, apply with one epoch of
fine-tuning, see the comparison and the pruned graph in Netron, download config.json and model.onnx (both
verified), replay the config from the command line and get the same metrics — with no Streamlit exception on any
page and no request leaving the machine. Screenshots of every page go to tests/artifacts/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.nav import go, set_number
from tests.e2e.servers import wait_until_healthy

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def server(home):
    """`prunelab dashboard` on a free port, bound to 127.0.0.1, with a private workspace."""
    port = free_port()
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", "--model", "mnist-resnet",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(proc, port)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.get_by_test_id("stException").count() == 0, f"a Streamlit exception on the {name} page"


def sweep_and_solve(page, expect) -> None:
    """Sensitivity sweep with its progress bar, the heatmap, then the solver for 2x fewer FLOPs."""
    go(page, "Sensitivity")
    set_number(page, "Eval images", 200)  # of the default 1,000: the journey needs a heatmap, not its precision
    page.get_by_role("button", name="Run sensitivity sweep").click()
    expect(page.get_by_test_id("stProgress").first).to_be_visible(timeout=60_000)  # progress while it runs
    shot(page, "sensitivity-running")
    expect(page.get_by_text("accuracy drop").first).to_be_visible(timeout=300_000)
    expect(page.locator("[data-testid='stPlotlyChart']:visible").first).to_be_visible(timeout=60_000)
    shot(page, "sensitivity-page")
    go(page, "Tune")
    page.get_by_text("Budget solver: fill the sliders for a target").click()
    solve = page.get_by_role("button", name="Solve and fill the sliders")
    for attempt in range(3):  # a click landing while the page is still rerunning (page switch) can be dropped
        solve.click()
        try:
            expect(page.get_by_text("allocation: target met")).to_be_visible(timeout=30_000)
            break
        except AssertionError:
            if attempt == 2:
                raise


def move_one_slider(page, expect) -> tuple[str, str]:
    estimate = page.get_by_test_id("stMetric").filter(has_text="Parameters (estimate)")
    expect(estimate).to_be_visible(timeout=60_000)
    before = estimate.get_by_test_id("stMetricValue").inner_text()
    slider = page.get_by_role("slider").nth(1)  # the first per-layer slider (0 is "All layers")
    slider.focus()
    for _ in range(10):  # ten steps of 0.01: at least one more channel of any group of 10 or more (mnist-resnet's
        slider.press("ArrowRight")  # smallest has 16); five steps moved no channel once the solver's fill changed
    expect(estimate.get_by_test_id("stMetricValue")).not_to_have_text(before, timeout=30_000)
    return before, estimate.get_by_test_id("stMetricValue").inner_text()


def download(page, label: str, folder: Path) -> Path:
    with page.expect_download(timeout=60_000) as info:
        page.get_by_test_id("stDownloadButton").filter(has_text=label).first.click()
    path = folder / label
    info.value.save_as(path)
    return path


def check_downloads(config_path: Path, onnx_path: Path, home: Path) -> dict:
    """config.json is a PruneLab config for mnist-resnet; model.onnx runs in onnxruntime at two batch sizes."""
    import onnxruntime

    from core.config import PruneConfig
    from core.store import Store

    config = PruneConfig.load(config_path)
    assert config.model == "mnist-resnet" and config.method == "channel" and config.finetune.epochs == 1
    sess = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((batch, 1, 28, 28), np.float32)})[0]
        assert out.shape == (batch, 10)
    os.environ["PRUNELAB_HOME"], previous = str(home), os.environ.get("PRUNELAB_HOME")
    try:
        (run,) = [r for r in Store().list(model="mnist-resnet", status="done") if r.config == config]
        assert run.file("model.onnx").read_bytes() == onnx_path.read_bytes()
    finally:
        os.environ["PRUNELAB_HOME"] = previous or ""
    return run.metrics["pruned"]


def replay(config_path: Path, home: Path, out: Path) -> dict:
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "core.cli", "apply", str(config_path), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "metrics.json").read_text())["pruned"]


def test_the_whole_journey_in_a_real_browser(server, home, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make test` installs it (apt-get install chromium chromium-driver)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
            ("http://127.0.0.1", "data:", "blob:", "about:")) else None)
        page.goto(server)
        expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=120_000)
        expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)  # the heatmap
        shot(page, "model-page")

        sweep_and_solve(page, expect)
        before, after = move_one_slider(page, expect)
        shot(page, "tune-page")

        page.get_by_role("button", name="Apply and measure").click()  # one epoch of fine-tuning by default
        expect(page.get_by_text("measured and saved")).to_be_visible(timeout=300_000)
        go(page, "Results")
        expect(page.get_by_text("% of baseline (lower is better)")).to_be_visible(timeout=30_000)
        assert "run=" in page.url and "model=mnist-resnet" in page.url  # the shown run and model, in the URL
        shown_run = page.url
        page.reload()  # a new session: the URL brings back the page, the model and the run
        expect(page.get_by_text("% of baseline (lower is better)")).to_be_visible(timeout=60_000)
        assert page.url == shown_run
        shot(page, "results-page")
        page.get_by_text("Show the exported graph in Netron").click()
        viewer = page.frame_locator("iframe[title^='Netron graph']").first  # st.iframe, titled by its alt
        expect(viewer.locator("svg#canvas g.node").first).to_be_attached(timeout=60_000)
        assert viewer.locator("svg#canvas g.node").count() > 10
        shot(page, "netron")

        go(page, "Export")
        expect(page.get_by_test_id("stDownloadButton").filter(has_text="model.onnx")).to_be_visible()
        config_path = download(page, "config.json", tmp_path)
        onnx_path = download(page, "model.onnx", tmp_path)
        shot(page, "export-page")
        page.goto(f"{server}/experiments?model=mnist-resnet")  # a page reached by its URL alone

        expect(page.get_by_text("Pareto").first).to_be_visible(timeout=60_000)
        shot(page, "experiments-page")
        browser.close()
    assert outside == [], f"the page reached outside this machine: {outside[:5]}"
    assert before != after
    measured = check_downloads(config_path, onnx_path, home)
    replayed = replay(config_path, home, tmp_path / "replay")
    for key in ("params", "flops", "size_bytes", "accuracy"):
        assert replayed[key] == measured[key], key

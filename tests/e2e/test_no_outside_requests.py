"""Nothing a file says makes the browser reach another host (issue 11, item 3), in Debian's chromium.

A listener on a loopback port stands in for an outside host. Markdown for an image on it is planted where the
dashboard shows text from files and models: a config's ratio key (the Experiments tab's import error), a
Hugging Face config.json's `architectures` (the own-model form's error) and a layer name (a user factory's
module, shown in Tune's slider labels). The page must show each as its characters, and the listener must
see no request. A second test puts every Markdown construct Streamlit knows through `md` and Streamlit's
real renderer: each shows as the same characters, with no image, no link and no request.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import PruneConfig
from core.models import load
from dashboard.components.text import JOINER
from tests.dashboard.test_untrusted_text import CORPUS, FACTORY
from tests.dashboard.test_untrusted_text import HOST as CORPUS_HOST
from tests.dashboard.test_untrusted_text import PLANT as FACTORY_PLANT
from tests.e2e.nav import go
from tests.e2e.servers import wait_until_healthy
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Sink:
    """An HTTP listener on 127.0.0.1 that records the path of every request it gets."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                paths.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    listener = Sink()
    yield listener
    listener.server.shutdown()


def serve(argv: list[str], home: Path, port: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a Streamlit server (argv) with a private workspace and wait until it answers."""
    env = {**os.environ, "PRUNELAB_HOME": str(home), **(extra_env or {})}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until_healthy(proc, port, seconds=90)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def browser_page(pw):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium chromium-driver")
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return browser, browser.new_page(viewport={"width": 1400, "height": 1000})


def seen(locator) -> str:
    """What a reader sees in an element: its text without word joiners, blanks collapsed."""
    return " ".join(locator.inner_text().replace(JOINER, "").split())


def fixtures(folder: Path, port: int) -> tuple[Path, Path, Path, dict[str, str]]:
    """A config with a planted ratio key, a Hugging Face folder with a planted architecture and a factory
    with a planted layer name (no dots: torch refuses them in module names; Chromium reads the dotless
    number as 127.0.0.1). Returns their paths and the planted strings."""
    plants = {"config": f"![x](http://127.0.0.1:{port}/config.png)",
              "hf": f"![x](http://127.0.0.1:{port}/hf.png)",
              "layer": FACTORY_PLANT.replace(CORPUS_HOST, f"http://2130706433:{port}")}
    config = folder / "shared-config.json"
    config.write_text(PruneConfig("digits-mlp", "channel", {"fc1": 0.3, plants["config"]: 0.5},
                                  model_fingerprint=load("digits-mlp").fingerprint).to_json())
    hf = folder / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": [plants["hf"]]}))
    factory = folder / "factory.py"
    factory.write_text(FACTORY.replace(repr(FACTORY_PLANT), repr(plants["layer"])))
    return config, hf, factory, plants


def own_model(page, expect, ref: str) -> None:
    """Choose "Your own model…" in the sidebar (if not chosen yet), type the reference and press Load."""
    sidebar = page.get_by_test_id("stSidebar")
    field = sidebar.get_by_role("textbox", name="Model reference")
    if not field.count():
        sidebar.get_by_test_id("stSelectbox").first.click()
        page.get_by_role("option", name="Your own model…").click()
    expect(field).to_be_visible(timeout=30_000)
    field.fill(ref)
    field.press("Enter")
    expect(field).to_have_value(ref)
    sidebar.get_by_role("button", name="Load", exact=True).click()


def test_planted_markdown_in_a_config_an_hf_config_and_a_layer_name_fetches_nothing(sink, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    config, hf, factory, plants = fixtures(tmp_path, sink.port)
    port = free_port()
    proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", "digits-mlp", "--port", str(port)],
                 tmp_path / "home", port)
    shown: dict[str, str] = {}
    try:
        with sync_playwright() as pw:
            browser, page = browser_page(pw)
            page.goto(f"http://127.0.0.1:{port}")
            expect(page.get_by_text("Test accuracy").first).to_be_visible(timeout=120_000)

            go(page, "Experiments")
            uploader = page.get_by_test_id("stFileUploader").filter(has_text="A PruneLab config.json")
            uploader.locator("input[type=file]").set_input_files(str(config))
            error = page.get_by_test_id("stAlert").filter(has_text="has no channel layer")
            expect(error).to_be_visible(timeout=60_000)
            shown["config"] = seen(error)

            own_model(page, expect, str(hf))
            error = page.get_by_test_id("stSidebar").get_by_test_id("stAlert").filter(has_text="architectures")
            expect(error).to_be_visible(timeout=60_000)
            shown["hf"] = seen(error)

            own_model(page, expect, f"{factory}:build")
            chosen = page.get_by_test_id("stSidebar").get_by_text("Your model", exact=False)
            expect(chosen).to_be_visible(timeout=180_000)  # the pages now show it
            loading = page.get_by_test_id("stSidebar").get_by_text("until your model loads")
            expect(loading).to_have_count(0, timeout=180_000)  # loaded (a page switch during a load loses it)
            go(page, "Tune")
            expect(page.get_by_test_id("stSlider").filter(has_text="fc1")).to_have_count(0, timeout=180_000)
            slider = page.get_by_test_id("stSlider").filter(has_text="coupled")
            expect(slider).to_have_count(1, timeout=180_000)  # the factory's one unit
            shown["layer"] = seen(slider)

            page.wait_for_load_state("networkidle")
            images = page.locator(f"img[src*=':{sink.port}']").count()
            browser.close()
    finally:
        stop(proc)
    assert sink.paths == [], f"the page fetched from the planted host: {sink.paths}"
    assert images == 0
    for where, plant in plants.items():
        assert plant in shown[where], (where, shown[where])


STREAMLIT_CORPUS_APP = '''
import json, sys
import streamlit as st
sys.path.insert(0, {root!r})
from dashboard.components.text import md

for i, text in enumerate(json.loads(open({cases!r}).read())):
    with st.container(key=f"markdown-{{i}}"):
        st.markdown(md(text))
    with st.container(key=f"error-{{i}}"):
        st.error(md(text))
    with st.container(key=f"caption-{{i}}"):
        st.caption(md(text))
    with st.container(key=f"checkbox-{{i}}"):
        st.checkbox(md(text), key=f"c{{i}}")
    with st.container(key=f"expander-{{i}}"):
        st.expander(md(text)).write("")
    with st.container(key=f"radio-{{i}}"):
        st.radio("options", [md(text)], key=f"r{{i}}", label_visibility="collapsed")
    with st.container(key=f"metric-{{i}}"):
        st.metric(md(text), 1)
    with st.container(key=f"tabs-{{i}}"):
        st.tabs([md(text)])
'''
KINDS = ("markdown", "error", "caption", "checkbox", "expander", "radio", "metric", "tabs")


def test_md_shows_every_markdown_construct_as_its_characters_in_streamlit(sink, tmp_path):
    """Images, links, autolinks, HTML, LaTeX, emoji, icons, colours, emphasis, headings, lists, tables,
    footnotes, escapes and entities, in every kind of element that renders Markdown."""
    from playwright.sync_api import expect, sync_playwright

    cases = [text.replace(CORPUS_HOST, f"http://127.0.0.1:{sink.port}") for text in CORPUS]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    app = tmp_path / "corpus_app.py"
    app.write_text(STREAMLIT_CORPUS_APP.format(root=str(ROOT), cases=str(tmp_path / "cases.json")))
    port = free_port()
    proc = serve([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                  "--server.address", "127.0.0.1", "--server.headless", "true",
                  "--browser.gatherUsageStats", "false"], tmp_path / "home", port)
    wrong: list[tuple[int, str, str]] = []
    try:
        with sync_playwright() as pw:
            browser, page = browser_page(pw)
            page.goto(f"http://127.0.0.1:{port}")
            page.locator(f".st-key-tabs-{len(cases) - 1}").wait_for(timeout=120_000)
            page.wait_for_load_state("networkidle")
            for i, text in enumerate(cases):
                for kind in KINDS:
                    box = page.locator(f".st-key-{kind}-{i}")
                    expect(box).to_contain_text(re.compile(r"\S"), timeout=30_000)  # drawn (not mid-rerun)
                    elements = box.locator("img, a, code, em, strong, del, h1, li, blockquote, table, .katex")
                    if " ".join(text.split()) not in seen(box) or elements.count():
                        wrong.append((i, kind, seen(box)))
            browser.close()
    finally:
        stop(proc)
    assert sink.paths == [], f"the page fetched from the planted host: {sink.paths}"
    assert wrong == [], wrong

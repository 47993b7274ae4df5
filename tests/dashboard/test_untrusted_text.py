"""Text from files, models and users is shown as text (issue 11, item 3).

Streamlit renders Markdown in alerts, captions, headings, widget labels and tooltips. A config key, a layer
name or a Hugging Face config field written as `![x](http://host/x.png)` used to reach the page as Markdown,
and the browser fetched the image from that host. Here the app is driven through AppTest, every string it
sends to be rendered as Markdown is rendered by a CommonMark parser (markdown-it-py, the reference the
browser test checks against Streamlit's own renderer), and the planted text must show as its own characters,
never as an image or a link to the host. `md` itself is checked over a corpus of Markdown constructs.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator

import pytest
from google.protobuf.message import Message
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from core.config import PruneConfig
from dashboard.components.own_model import OWN
from dashboard.components.text import JOINER, md
from tests.conftest import get_spec
from tests.dashboard.nav import PAGES, goto
from tests.dashboard.test_app import open_app, wait_for_job

HOST = "http://2130706433:9"  # 127.0.0.1 written without dots: torch module names cannot hold a "."
PLANT = f"![x]({HOST}/x)"
PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
MARKDOWN_BODIES = ("Markdown", "Alert", "Heading", "Toast")  # protos whose `body` Streamlit renders as Markdown
MARKDOWN_LISTS = ("options", "captions")  # of a Radio: each option and caption is Markdown

FACTORY = f'''
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def build():
    digits = load_digits()
    x = torch.tensor(digits.data[:300], dtype=torch.float32) / 16
    y = torch.tensor(digits.target[:300], dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module({PLANT!r}, nn.Linear(64, 32))  # a layer whose name is Markdown for an image
    model.add_module("act", nn.ReLU())
    model.add_module("out", nn.Linear(32, 10))
    data = TensorDataset(x, y)
    return {{"model": model, "example_input": x[:1], "eval_loader": DataLoader(data, batch_size=100),
            "train_loader": DataLoader(data, batch_size=100)}}
'''


def _strings(msg: Message) -> Iterator[tuple[str, str, str]]:
    """(proto name, field name, text) of every string field of a proto message, nested ones included."""
    for field, value in msg.ListFields():
        for item in value if field.is_repeated else [value]:
            if isinstance(item, Message):
                yield from _strings(item)
            elif isinstance(item, str):
                yield msg.DESCRIPTOR.name, field.name, item


def rendered(at: AppTest) -> list[str]:
    """Every piece of text the app sends to be drawn as Markdown (bodies of markdown, captions, alerts and
    headings; every label and tooltip; radio options), as HTML from a CommonMark renderer."""
    found: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        for kind, field, text in _strings(proto) if proto is not None else ():
            if (field == "body" and kind in MARKDOWN_BODIES) or field in ("label", "help") or (
                    kind == "Radio" and field in MARKDOWN_LISTS):
                found.append(PARSER.render(text))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def as_text(page: str) -> str:
    """The characters a reader sees in rendered HTML (tags dropped, entities decoded, joiners removed)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page)).replace(JOINER, "")


def assert_shown_as_text(at: AppTest, every_page: bool = False) -> None:
    """The planted text appears as itself somewhere, and nothing on the page (or on any page) points at its
    host."""
    pages = [text for page in PAGES for text in rendered(goto(at, page))] if every_page else rendered(at)
    assert not [p for p in pages if HOST in "".join(re.findall(r'(?:src|href)="([^"]*)"', p))], \
        [p for p in pages if "<img" in p or "<a " in p]
    assert any(PLANT in as_text(p) for p in pages), "the planted text is not shown"


def test_an_imported_config_key_is_shown_as_text(monkeypatch, tmp_path):
    """Item 3's first case: the Experiments page's import error quotes the config's unknown ratio keys."""
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "experiments")
    config = PruneConfig("digits-mlp", "channel", {"fc1": 0.3, PLANT: 0.5},
                         model_fingerprint=get_spec("digits-mlp").fingerprint)
    at.file_uploader(key="exp-import").set_value((f"{PLANT}.json", config.to_json().encode(), "application/json"))
    at.run()
    assert not at.exception
    assert any(PLANT in as_text(PARSER.render(e.value)) for e in at.error)
    assert_shown_as_text(at)


def test_a_hugging_face_architecture_is_shown_as_text(monkeypatch, tmp_path):
    """Item 3's second case: the own-model form's error names the config.json's architectures."""
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [PLANT]}))
    at = open_app(monkeypatch, "digits-mlp", tmp_path / "home")
    at.sidebar.selectbox(key="model").set_value(OWN).run()
    at.sidebar.text_input(key="own-ref").input(str(folder))
    at.sidebar.button(key="own-load").click().run()
    assert not at.exception
    assert any(PLANT in as_text(PARSER.render(e.value)) for e in at.sidebar.error)
    assert_shown_as_text(at)


@pytest.mark.slow
def test_a_layer_name_is_shown_as_text_on_every_page(monkeypatch, tmp_path):
    """A user model with a layer named like an image: the Model, Sensitivity, Tune, Results, Export and
    Experiments pages (each visited) after a run that prunes it."""
    factory = tmp_path / "factory.py"
    factory.write_text(FACTORY)
    at = open_app(monkeypatch, "digits-mlp", tmp_path / "home")
    at.sidebar.selectbox(key="model").set_value(OWN).run()
    at.sidebar.text_input(key="own-ref").input(f"{factory}:build")
    at.sidebar.button(key="own-load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert_shown_as_text(at, every_page=True)  # Tune's slider labels name the layer

    handle = at.sidebar.selectbox(key="model").value
    goto(at, "tune").slider(key=f"ratio-all|{handle}|channel").set_value(0.5).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert_shown_as_text(at, every_page=True)


CORPUS = [
    PLANT, f'![x]({HOST}/x.png "t")', f"![x][r]\n\n[r]: {HOST}/r.png", f"[a link]({HOST}/l)", f"<{HOST}/auto>",
    f'<img src="{HOST}/i.png">', "**bold** _it_ __b__ *i* ~~s~~ ~t~ `code` ``c``", "# heading", "- item\n+ item",
    "1. item\n2) item", "> quote", "| a | b |\n|---|---|\n| 1 | 2 |", "title\n===", "---", "note[^1]\n\n[^1]: foot",
    "$x^2$ and $$y$$ cost $5", ":smile: :+1: :a:b:c: x:smile:y", ":material/home: :material_home: :streamlit:",
    ":red[colored] :blue-badge[badge] :rainbow[r]", "C:\\path\\to\\file a\\*b \\", "&amp; &#58; &lt;b&gt;",
    "layer1.0 patch_embed digits_cnn.py:build (it has: fc1, fc2) 1.5 a__b _c_", "www.x.com me@x.org http://x/a#b_",
]


@pytest.mark.parametrize("text", CORPUS)
def test_md_output_renders_as_the_same_characters(text):
    """CommonMark reads md(text) as plain text: the same characters (blank lines part paragraphs), no element
    but paragraphs."""
    page = PARSER.render(md(text))
    assert set(re.findall(r"<(\w+)", page)) <= {"p"}, page
    assert as_text(page).split() == text.split()


def test_md_leaves_ordinary_names_and_messages_alone():
    """Names and one-line messages keep their characters in the source too (tests and logs read them)."""
    for text in ("layer1.0", "patch_embed", "digits_cnn.py:build", "it has: fc1, fc2", "ratio for 'fc1' must be "
                 "at least 0 and below 1, got 1.5", "/tmp/user-models0/model.pt", "10:30", "a__b"):
        assert md(text) == text


def test_md_is_linear_in_the_length_of_its_input():
    """A 1 MB config key of underscores or colons is escaped at once (no quadratic scan)."""
    for text in ("_" * 1_000_000, ":a" * 500_000, "a_" * 500_000):
        assert len(md(text)) >= len(text)


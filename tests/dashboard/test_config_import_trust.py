"""The dashboard's config import never loads a model a config names: a config for a model file says which file
would run and offers the sidebar's "Your own model…" form, pre-filled, where only the user's Load runs it."""

from __future__ import annotations

from core.config import PruneConfig
from dashboard.components.own_model import OWN
from tests.dashboard.test_app import open_app

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("code from the config's model file ran")

def build():
    raise RuntimeError("the hostile factory was called")
"""


def test_a_config_for_a_model_file_runs_nothing_and_offers_the_form(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    model_file = tmp_path / "shared" / "model.py"
    model_file.parent.mkdir()
    model_file.write_text(EVIL.format(marker=str(marker)))
    ref = f"{model_file}:build"
    config = PruneConfig(ref, "channel", {"features.0": 0.5}).to_json().encode()
    at = open_app(monkeypatch, "digits-mlp", tmp_path / "home", "experiments")
    at.file_uploader(key="exp-import").set_value(("config.json", config, "application/json")).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "runs the Python file" in errors[0] and "Your own model" in errors[0], errors
    assert not marker.exists() and not at.exception
    at.button(key="exp-import-own").click().run()
    assert at.session_state["model"] == OWN and at.session_state["own-ref"] == ref
    assert not marker.exists()  # only the form's Load button runs it


def test_a_config_for_another_sample_says_which_to_choose(monkeypatch, tmp_path):
    config = PruneConfig("mnist-resnet", "channel", {"layer1.0.conv1": 0.5}).to_json().encode()
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "experiments")
    at.file_uploader(key="exp-import").set_value(("config.json", config, "application/json")).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "choose mnist-resnet in the sidebar" in errors[0]
    assert "exp-import-own" not in [b.key for b in at.button]  # a sample needs no trust: just choose it

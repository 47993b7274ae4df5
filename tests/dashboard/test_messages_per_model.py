"""A message about one model's work (the budget solver's verdict, a config loaded into Tune) is shown on that
model's pages only: after switching the sidebar to another model, the page does not repeat it."""

from __future__ import annotations

import pytest

from core.config import PruneConfig
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app
from tests.dashboard.test_bad_runs import _prune


def _texts(at) -> list[str]:
    return [m.value for kind in (at.success, at.warning, at.error, at.info) for m in kind]


def _switch(at, model: str) -> None:
    at.sidebar.selectbox(key="model").set_value(model).run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.slow  # two models opened in AppTest: ~30 s on 2 busy cores
def test_the_solver_message_stays_with_its_model(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "tune")
    at.selectbox(key="solver-strategy").set_value("uniform").run()
    at.button(key="solve").click().run()
    assert any("allocation: target" in t for t in _texts(at)), _texts(at)
    _switch(at, "digits-mlp")
    goto(at, "tune")
    assert not any("allocation: target" in t for t in _texts(at)), _texts(at)


@pytest.mark.slow  # two models opened in AppTest: ~30 s on 2 busy cores
def test_an_imported_config_message_stays_with_its_model(monkeypatch, tmp_path):
    config = PruneConfig("digits-mlp", "channel", {}).to_json().encode()
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "experiments")
    at.file_uploader(key="exp-import").set_value(("config.json", config, "application/json")).run()
    assert any(t.startswith("Loaded config.json") for t in _texts(at)), _texts(at)
    _switch(at, "mnist-resnet")
    goto(at, "experiments")
    assert not any("Loaded config.json" in t for t in _texts(at)), _texts(at)


@pytest.mark.slow  # a CLI run, then the Experiments page of two models: ~30 s on 2 busy cores
def test_a_delete_message_stays_with_its_model(monkeypatch, tmp_path):
    _prune(tmp_path, monkeypatch, {"fc1": 0.5}, "gone")
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "experiments")
    exp_id = at.selectbox(key="exp-selected").value
    at.checkbox(key=f"exp-delete-confirm|{exp_id}").check().run()
    at.button(key="exp-delete").click().run()
    assert any(t.startswith(f"Deleted {exp_id}") for t in _texts(at)), _texts(at)
    _switch(at, "mnist-resnet")
    goto(at, "experiments")
    assert not any("Deleted" in t for t in _texts(at)), _texts(at)

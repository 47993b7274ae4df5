"""Importing a config (Experiments page upload, components.load_config) restores its schedule and fine-tuning
settings as well as its method, criterion and ratios: the Tune page then builds the same config again."""

from __future__ import annotations

import pytest

from core.config import FinetuneConfig, PruneConfig, Schedule
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app

MODEL = "digits-mlp"


@pytest.mark.slow  # AppTest: the Experiments and Tune pages of digits-mlp, ~25 s on 2 busy cores
def test_an_imported_config_sets_schedule_and_fine_tuning_on_tune(monkeypatch, tmp_path):
    spec = get_spec(MODEL)
    config = PruneConfig(model=MODEL, method="channel", ratios={"fc1": 0.3}, criterion="l2",
                         model_fingerprint=spec.fingerprint, seed=7,
                         finetune=FinetuneConfig(epochs=3, lr=0.005, distill=True, temperature=2.0, alpha=0.25),
                         schedule=Schedule(kind="iterative", steps=4, curve="linear", last_round=0.7))
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.file_uploader(key="exp-import").set_value(("config.json", config.to_json().encode(), "application/json")).run()
    assert not at.error, [e.value for e in at.error]
    goto(at, "tune")
    assert at.number_input(key="epochs").value == 3
    assert at.number_input(key="lr").value == pytest.approx(0.005)
    assert at.number_input(key="seed").value == 7
    assert at.radio(key="schedule").value == "iterative"
    assert at.number_input(key="schedule-steps").value == 4
    assert at.radio(key="schedule-curve").value == "linear"
    assert at.number_input(key="schedule-last").value == pytest.approx(0.7)
    assert at.checkbox(key="distill").value is True and at.checkbox(key="rewind").value is False
    assert at.number_input(key="distill-temperature").value == pytest.approx(2.0)
    assert at.slider(key="distill-alpha").value == pytest.approx(0.25)
    assert at.selectbox(key="criterion").value == "l2"
    assert at.slider(key=f"ratio|{MODEL}|channel|fc1").value == pytest.approx(0.3)

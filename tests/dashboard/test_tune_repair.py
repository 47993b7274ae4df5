"""The Tune page offers the post-training repairs the chosen method takes (none for a method without one), and the
run's config records the repair and calibration size the page showed."""

from __future__ import annotations

import pytest

from core.config import PruneConfig
from tests.dashboard.test_app import open_app, wait_for_job

MODEL = "digits-mlp"


@pytest.mark.slow  # AppTest: the Tune page and one digits-mlp run without fine-tuning, ~20 s on 2 busy cores
def test_tune_offers_the_methods_repairs_and_the_run_records_them(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    assert at.selectbox(key="repair").options == ["none", "lstsq", "bias"]  # channel, the default method
    at.radio(key="method").set_value("layer").run()
    assert at.selectbox(key="repair").options == ["none"]
    at.radio(key="method").set_value("unstructured").run()
    assert at.selectbox(key="repair").options == ["none", "sparsegpt", "lstsq"]
    at.selectbox(key="repair").set_value("sparsegpt").run()
    at.number_input(key="repair-calib").set_value(128).run()
    at.slider(key=f"ratio|{MODEL}|unstructured|fc1").set_value(0.5).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = PruneConfig.load(next((tmp_path / "runs").iterdir()) / "config.json")
    assert (config.method, config.repair, config.calibration_samples) == ("unstructured", "sparsegpt", 128)
    at.selectbox(key="criterion").set_value("wanda").run()  # SparseGPT picks its own masks: said in one line
    assert any("criterion wanda would be ignored" in e.value for e in at.error)

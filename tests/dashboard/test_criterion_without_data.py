"""A criterion that needs data (taylor, fisher, activation, apoz: core.importance Criterion.uses_data) is not carried
over from a model with data to one without (a reference architecture with random weights): the criterion widgets
fall back to a data-free criterion, with no error on the page."""

from __future__ import annotations

import pytest

from core.importance import REGISTRY
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app

NO_DATA = "resnet18"  # the smallest reference architecture: random weights, no data set


@pytest.mark.slow  # two models opened in AppTest: ~30 s on 2 busy cores
def test_a_data_criterion_falls_back_on_a_model_without_data(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "digits-mlp", tmp_path)
    at.selectbox(key="heat-criterion").set_value("taylor").run()
    goto(at, "tune")
    at.selectbox(key="criterion").set_value("taylor").run()
    assert not at.exception and not at.error
    at.sidebar.selectbox(key="model").set_value(NO_DATA).run()
    goto(at, "tune")
    assert not at.exception and not at.error, [e.value for e in at.error]
    criterion = at.selectbox(key="criterion")
    assert not REGISTRY[criterion.value].uses_data
    assert not {c.label for c in REGISTRY.values() if c.uses_data} & set(criterion.options)  # nor offered
    goto(at, "model")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not REGISTRY[at.selectbox(key="heat-criterion").value].uses_data

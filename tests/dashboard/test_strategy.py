"""The Tune page's strategy helper (AppTest): the answers give core.strategy's recommendation, Apply sets
the method, criterion, schedule and sliders (locked ones kept), and a method the model has nothing for
(heads in a CNN) is said, not applied."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import schedule_evidence
from core.estimate import build_cost_model
from core.strategy import Situation, detect_family, recommend
from dashboard.components.format import human
from dashboard.components.sliders import slider_key
from dashboard.components.strategy_helper import describe
from tests.conftest import get_spec
from tests.dashboard.test_app import metric, open_app

MODEL = "mnist-resnet"


@pytest.fixture(autouse=True)
def _guide_without_measurements(tmp_path_factory, monkeypatch):
    """The guide itself: no schedules evidence (core/schedule_evidence.json would change gradual answers where a
    schedule measured below one-shot; tests/core/test_strategy_evidence.py covers that)."""
    monkeypatch.setattr(schedule_evidence, "PATH", tmp_path_factory.mktemp("no-evidence") / "none.json")


def answer(at: AppTest, bottleneck: str, loss: str, hardware: str, family: str | None = None,
           model: str = MODEL) -> AppTest:
    at.selectbox(key="strategy-bottleneck").set_value(bottleneck)
    at.selectbox(key="strategy-loss").set_value(loss)
    at.selectbox(key="strategy-hardware").set_value(hardware)
    if family:
        at.selectbox(key=f"strategy-family|{model}").set_value(family)
    return at.run()


def shown(at: AppTest) -> str:
    return next(m.value for m in at.markdown if " pruning · criterion " in m.value)


def units(model: str, method: str) -> list[str]:
    spec = get_spec(model)
    return [u.name for u in build_cost_model(spec.model, spec.example_input, method).units]


@pytest.mark.parametrize("answers", [
    ("speed", "none", "cpu"), ("memory", "tolerable", "gpu"), ("hardware", "small", "mobile"),
    ("speed", "none", "specialized"), ("memory", "none", "cpu"),
])
def test_shown_recommendation_is_cores(monkeypatch, tmp_path, answers):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    family = at.selectbox(key=f"strategy-family|{MODEL}").value
    assert family == detect_family(get_spec(MODEL).model) == "cnn"
    answer(at, *answers)
    rec = recommend(Situation(*answers, family))
    assert shown(at) == describe(rec)
    assert any(rec.reason in c.value for c in at.caption)


def test_apply_sets_method_criterion_schedule_and_unlocked_sliders(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.number_input(key="epochs").set_value(0).run()
    at.multiselect(key="solver-locked").set_value(["layer2.0.conv1"]).run()
    answer(at, "speed", "none", "cpu")
    rec = recommend(Situation("speed", "none", "cpu", "cnn"))
    assert (rec.method, rec.criterion, rec.schedule, rec.ratio) == ("channel", "l1", "iterative", 0.3)
    at.button(key="strategy-apply").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    assert at.radio(key="method").value == "channel" and at.selectbox(key="criterion").value == "l1"
    assert at.radio(key="schedule").value == "iterative" and at.number_input(key="epochs").value == 1
    ratios = {u: at.slider(key=slider_key(MODEL, "channel", u)).value for u in units(MODEL, "channel")}
    assert ratios == pytest.approx({u: 0.3 for u in ratios} | {"layer2.0.conv1": 0.0})
    spec = get_spec(MODEL)
    expected = build_cost_model(spec.model, spec.example_input, "channel").estimate(ratios)
    assert metric(at, "Parameters (estimate)") == human(expected["params"])
    assert any("Tune is set" in s.value and "locked, kept: layer2.0.conv1" in s.value for s in at.success)


def test_apply_switches_to_a_mask_method_with_a_dynamic_schedule(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    answer(at, "memory", "none", "cpu")
    rec = recommend(Situation("memory", "none", "cpu", "cnn"))
    assert (rec.method, rec.schedule) == ("unstructured", "dynamic")
    at.button(key="strategy-apply").click().run()
    assert at.radio(key="method").value == "unstructured" and at.radio(key="schedule").value == "dynamic"
    assert all(at.slider(key=slider_key(MODEL, "unstructured", u)).value == pytest.approx(rec.ratio)
               for u in units(MODEL, "unstructured"))
    assert not at.error  # the config this makes is one PruneConfig accepts


def test_heads_on_a_cnn_are_said_not_applied(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    answer(at, "hardware", "small", "mobile", "transformer")
    assert recommend(Situation("hardware", "small", "mobile", "transformer")).method == "head"
    assert any("head pruning cannot be applied" in w.value for w in at.warning)
    assert at.button(key="strategy-apply").disabled
    assert at.radio(key="method").value == "channel"  # nothing changed


def test_model_without_data_stays_one_shot(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "resnet50", tmp_path, "tune")
    answer(at, "speed", "small", "mobile", model="resnet50")
    at.button(key="strategy-apply").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    assert at.radio(key="method").value == "channel"
    assert {at.session_state[slider_key("resnet50", "channel", u)] for u in units("resnet50", "channel")} == {0.5}
    assert any("schedule stays one-shot without fine-tuning" in s.value for s in at.success)

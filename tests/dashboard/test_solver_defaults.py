"""The budget solver as a new user meets it: with no sensitivity sweep yet, its default strategy still solves
(it is global until a sensitivity sweep exists, and the panel says why), and after a solve the "All
layers" slider shows what the solver set — the mean of the layers' ratios, labelled mixed when they differ."""

from __future__ import annotations

import pytest

from tests.dashboard.test_app import open_app
from tests.dashboard.test_hardware_ui import solve_for_half_the_flops_on_hardware

MODEL = "mnist-resnet"


@pytest.mark.slow  # AppTest on mnist-resnet with a global solve: ~30 s on 2 busy cores
def test_the_default_strategy_solves_without_a_sweep_and_the_all_slider_follows(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    strategy = at.selectbox(key="solver-strategy")
    assert strategy.value == "global"
    assert any("needs a sensitivity sweep" in c.value for c in at.caption)
    at.button(key="solve").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("allocation: target" in m.value for m in (*at.success, *at.warning))
    layers = [s.value for s in at.slider if s.key.startswith(f"ratio|{MODEL}|channel|")]
    assert len(set(layers)) > 1  # the global strategy cuts layers differently
    mean = sum(layers) / len(layers)
    assert at.slider(key=f"ratio-all|{MODEL}|channel").value == pytest.approx(mean, abs=0.005)
    assert any("mixed" in c.value for c in at.caption)


@pytest.mark.slow  # a hardware-aware solve timed in a worker: ~30 s on 2 busy cores
def test_the_all_slider_follows_a_hardware_aware_solve(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    at, _ = solve_for_half_the_flops_on_hardware(monkeypatch, tmp_path)
    assert not at.exception and at.session_state["hw-aware"] is True
    layers = [s.value for s in at.select_slider if s.key.startswith("ratio-hw|digits-mlp|channel|")]
    assert layers and any(layers)
    mean = sum(layers) / len(layers)
    assert at.slider(key="ratio-all-hw|digits-mlp|channel").value == pytest.approx(mean, abs=0.005)

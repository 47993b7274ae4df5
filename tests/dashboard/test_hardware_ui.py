"""Hardware-aware widths on the Tune page (AppTest): labels mark slow widths, hardware-aware mode offers
only fast widths, the table is measured from the page, and the hardware-aware solver fills the sliders."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

import core.hardware as hw
from core.graph import channel_units, kept_channels
from core.hardware import LatencyTable, candidate_widths
from tests.conftest import get_spec
from tests.dashboard.test_app import open_app, wait_for_job


def write_staircase_table(model: str, batch: int = 1, block: int = 16) -> LatencyTable:
    """A synthetic table where time steps up every `block` channels, saved where the app looks for it."""
    spec = get_spec(model)
    units = channel_units(spec.model, spec.example_input)
    widths = {u.name: candidate_widths(u) for u in units}
    table = LatencyTable(batch, 1, "synthetic", widths,
                         {u: [float(-(-w // block)) for w in ws] for u, ws in widths.items()})
    path = hw.cache_path(spec, batch, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table.to_json())
    return table


def test_labels_mark_slow_widths_and_hardware_mode_offers_fast_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    table = write_staircase_table("mnist-resnet")
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "tune")
    at.slider(key="ratio|mnist-resnet|channel|layer3.0.conv2").set_value(0.3).run()  # keeps 45 of 64
    label = at.slider(key="ratio|mnist-resnet|channel|layer3.0.conv2").label
    assert "keeps 45" in label and "slow width: 32 runs as fast" in label
    at.toggle(key="hw-aware").set_value(True).run()
    hw_slider = at.select_slider(key="ratio-hw|mnist-resnet|channel|layer3.0.conv2")
    assert hw_slider.options == [f"{r:.2f} ({64 - round(r * 64)} kept)" for r in table.ratios_for("layer3.0.conv2")]
    at.slider(key="ratio-all-hw|mnist-resnet|channel").set_value(0.3).run()
    spec = get_spec("mnist-resnet")
    for unit in channel_units(spec.model, spec.example_input):
        ratio = at.select_slider(key=f"ratio-hw|mnist-resnet|channel|{unit.name}").value
        assert kept_channels(unit, ratio) in table.fast_widths(unit.name)
    assert any("Latency at batch 1 (estimate" in m.label for m in at.metric)


def test_table_is_measured_from_the_page(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.button(key="build-lut").click().run()
    wait_for_job(at, "lut")
    table = hw.cached(get_spec("digits-mlp"), 1)
    assert table is not None and set(table.widths) == {"fc1", "fc2"}
    assert any("Measured (" in c.value for c in at.caption)


def solve_for_half_the_flops_on_hardware(monkeypatch, tmp_path) -> tuple[AppTest, LatencyTable]:
    """Tune on digits-mlp with a staircase width table: a hardware-aware uniform solve for 2x fewer FLOPs, run
    to its end in the worker; the app and the table."""
    table = write_staircase_table("digits-mlp")
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.selectbox(key="solver-target").set_value("flops")
    at.number_input(key="solver-value").set_value(2.0)
    at.selectbox(key="solver-strategy").set_value("uniform")
    at.checkbox(key="solver-hw").check().run()
    at.button(key="solve").click().run()
    return wait_for_job(at, "hw-solve"), table


def test_hardware_solver_times_candidates_and_fills_sliders(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec = get_spec("digits-mlp")
    at, table = solve_for_half_the_flops_on_hardware(monkeypatch, tmp_path)
    assert not at.exception
    assert at.session_state["hw-aware"] is True
    messages = [m.value for m in [*at.success, *at.info, *at.warning, *at.error]]
    assert any("hardware-aware allocation: target met" in m for m in messages), messages
    for unit in channel_units(spec.model, spec.example_input):
        ratio = at.select_slider(key=f"ratio-hw|digits-mlp|channel|{unit.name}").value
        assert kept_channels(unit, ratio) in table.fast_widths(unit.name)

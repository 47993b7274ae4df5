"""Hardware-aware widths: layer shapes, one-layer ONNX benchmarks, the width-latency table's logic
(frontier, alignment, snapping) on controlled numbers, its cache, and the solver that keeps fast widths
and picks the alignment by timing whole models."""

from __future__ import annotations

import numpy as np
import pytest

import core.hardware as hw
from core.allocate import Target, allocate
from core.estimate import build_cost_model
from core.graph import channel_units, kept_channels
from core.hardware import LatencyTable, candidate_widths, layer_onnx, layer_shapes
from core.latency import session
from core.sensitivity import SweepSpec, sweep
from tests.conftest import get_spec


def test_layer_shapes_record_what_each_layer_sees():
    shapes = layer_shapes(get_spec("mnist-resnet").model, get_spec("mnist-resnet").example_input)
    assert shapes["stem.0"].spatial == (28, 28) and shapes["stem.0"].cin == 1 and shapes["stem.0"].cout == 16
    assert shapes["layer3.1.conv1"].spatial == (7, 7) and shapes["layer2.0.conv1"].stride == (2, 2)
    assert shapes["fc"].kind == "linear" and shapes["fc"].spatial == ()
    vit = layer_shapes(get_spec("mnist-vit").model, get_spec("mnist-vit").example_input)
    assert vit["blocks.0.fc1"].spatial == (17,)  # 16 patches + the class token
    mobile = layer_shapes(get_spec("mnist-mobilenet").model, get_spec("mnist-mobilenet").example_input)
    assert mobile["features.4.conv.3"].depthwise


@pytest.mark.parametrize("layer", ["layer2.0.conv1", "features.4.conv.3", "blocks.0.fc1"])
def test_one_layer_models_run_with_the_requested_widths(layer):
    model = {"l": "mnist-resnet", "f": "mnist-mobilenet", "b": "mnist-vit"}[layer[0]]
    shape = layer_shapes(get_spec(model).model, get_spec(model).example_input)[layer]
    cin = 12 if shape.depthwise else shape.cin
    out = 12 if shape.depthwise else 7
    sess = session(layer_onnx(shape, cin, out))
    dims = (3, cin, *shape.spatial) if shape.kind == "conv" else (3, *shape.spatial, cin)
    y = sess.run(None, {"x": np.ones(dims, np.float32)})[0]
    assert y.shape[0] == 3 and (y.shape[1] if shape.kind == "conv" else y.shape[-1]) == out


def _table(ms: dict[str, list[float]], widths: dict[str, list[int]] | None = None) -> LatencyTable:
    widths = widths or {u: list(range(1, len(t) + 1)) for u, t in ms.items()}
    return LatencyTable(32, 1, "test", widths, ms)


def staircase(size: int, block: int = 4) -> list[float]:
    """Time grows by block: widths 1..4 cost 1, 5..8 cost 2, ..."""
    return [float(-(-w // block)) for w in range(1, size + 1)]


def test_frontier_is_the_top_of_each_stair_and_round_to_the_block():
    t = _table({"a": staircase(12), "b": staircase(8)})
    assert t.frontier("a") == [4, 8, 12] and t.frontier("b") == [4, 8]
    assert t.round_to() == 4
    assert t.fast_widths("a") == [4, 8, 12]
    assert t.aligned(8).fast_widths("a") == [8, 12]  # multiples of 8, and the full width
    assert t.snap("a", 7) == 4 and t.snap("a", 8) == 8 and t.snap("a", 2) == 4
    assert t.ratios_for("a") == [0.0, round(1 / 3, 6), round(2 / 3, 6)]
    assert t.saving("a", 5) == 3.0 - 2.0 and t.time("a", 12) == 3.0


def test_an_unaligned_width_slower_than_the_full_one_is_not_fast():
    times = [1.0, 1.1, 1.2, 1.3, 3.0, 3.1, 3.2, 2.0]  # 5..7 channels cost more than all 8 (layout fallback)
    t = _table({"a": times})
    assert t.frontier("a") == [1, 2, 3, 4, 8]
    assert 5 not in t.fast_widths("a") and t.snap("a", 7) == 4


def test_a_width_insensitive_unit_may_take_any_width():
    t = _table({"a": [1.0, 1.004, 0.998, 1.0]})  # differences below 1% of the largest time: noise
    assert t.frontier("a") == [1, 2, 3, 4]


def test_candidate_widths_cover_small_units_and_respect_heads():
    resnet = get_spec("mnist-resnet")
    for unit in channel_units(resnet.model, resnet.example_input):
        assert candidate_widths(unit) == list(range(1, unit.size + 1))
    vit = get_spec("mnist-vit")
    attn = next(u for u in channel_units(vit.model, vit.example_input) if u.heads > 1)
    assert all(w % attn.heads == 0 for w in candidate_widths(attn)) and candidate_widths(attn)[-1] == attn.size


@pytest.fixture(scope="module")
def mlp_table():
    spec = get_spec("digits-mlp")
    units = channel_units(spec.model, spec.example_input)
    # batch 256: at batch 8 a layer of this MLP takes ~0.03 ms whatever its width, and a busy machine's noise
    # decided which widths looked fast (CI, 2026-11-30: none small enough to halve the FLOPs)
    return hw.build_table(spec.model, spec.example_input, units, batch=256)


def test_measured_table_has_a_time_per_candidate_width(mlp_table):
    spec = get_spec("digits-mlp")
    for unit in channel_units(spec.model, spec.example_input):
        assert mlp_table.widths[unit.name] == candidate_widths(unit)
        assert all(t > 0 for t in mlp_table.ms[unit.name])
        assert mlp_table.fast_widths(unit.name)[-1] == unit.size


def test_table_is_cached_on_disk(monkeypatch, tmp_path, mlp_table):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec = get_spec("digits-mlp")
    units = channel_units(spec.model, spec.example_input)
    calls = []
    monkeypatch.setattr(hw, "build_table", lambda *a, **k: calls.append(1) or mlp_table)
    first = hw.load_or_build(spec, units, batch=8)
    second = hw.load_or_build(spec, units, batch=8)
    assert calls == [1] and first == second == mlp_table
    hw.load_or_build(spec, units, batch=4)  # another batch size is another table
    assert calls == [1, 1]


def test_hardware_aware_allocation_keeps_fast_widths_and_meets_the_target(mlp_table):
    spec = get_spec("digits-mlp")
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    table = sweep(spec, SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.25, 0.5, 0.75), eval_samples=200,
                                  calibration_samples=64))
    for strategy in ("uniform", "sensitivity"):
        result = allocate(strategy, cm, Target("flops", 2), table=table, hardware=mlp_table)
        assert result.met
        for unit in cm.units:
            assert kept_channels(unit, result.ratios[unit.name]) in mlp_table.fast_widths(unit.name)


def test_choose_by_measurement_builds_times_and_picks_the_fastest(mlp_table):
    spec = get_spec("digits-mlp")
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    from core.export import export_onnx

    base_onnx, _ = export_onnx(spec.model, spec.example_input)
    chosen, report = hw.choose_by_measurement(
        spec, lambda t: allocate("uniform", cm, Target("flops", 2), hardware=t), mlp_table, base_onnx)
    assert [r["align"] for r in report] == hw.alignments(mlp_table)
    timed = [r for r in report if "speedup" in r]
    assert timed and chosen.met
    best = min(timed, key=lambda r: r["latency_ms"])
    assert chosen.ratios == best["ratios"]


class _Timed:
    def __init__(self, ms: float) -> None:
        self.median_ms = ms


def _fake_timer(config_ms: float, aligned_ms: float):
    def timer(models, *args, **kwargs):
        assert set(models) == {"config", "aligned"}
        return {"config": _Timed(config_ms), "aligned": _Timed(aligned_ms)}
    return timer


def staircase_table(spec, block: int = 16) -> LatencyTable:
    units = channel_units(spec.model, spec.example_input)
    widths = {u.name: candidate_widths(u) for u in units}
    return LatencyTable(1, 1, "synthetic", widths, {u: [float(-(-w // block)) for w in ws] for u, ws in widths.items()})


def test_aligned_alternative_snaps_slow_widths_and_reports_only_when_faster(monkeypatch):
    import core.experiment as experiment
    from core.export import export_onnx

    spec = get_spec("mnist-resnet")
    table = staircase_table(spec)
    units = {u.name: u for u in channel_units(spec.model, spec.example_input)}
    onnx, _ = export_onnx(spec.model, spec.example_input)  # stands for the config's model; timing is faked
    ratios = {"layer3.0.conv2": 0.3}  # keeps 45 of 64: slow on a 16-channel staircase
    monkeypatch.setattr(experiment, "measure_interleaved", _fake_timer(2.0, 1.0))
    alt = experiment.aligned_alternative(spec, ratios, onnx, table)
    assert kept_channels(units["layer3.0.conv2"], alt["ratios"]["layer3.0.conv2"]) == 32
    assert set(alt["ratios"]) == {"layer3.0.conv2"} and alt["speedup"] == 2.0
    monkeypatch.setattr(experiment, "measure_interleaved", _fake_timer(1.0, 0.99))
    assert experiment.aligned_alternative(spec, ratios, onnx, table) is None  # within 3%: not worth a warning

    def never(*a, **k):
        raise AssertionError("an aligned config must not be timed again")
    monkeypatch.setattr(experiment, "measure_interleaved", never)
    assert experiment.aligned_alternative(spec, {"layer3.0.conv2": 0.5}, onnx, table) is None  # 32 kept: fast

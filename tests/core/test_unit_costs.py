"""What each unit's pruning acts on: its layers' share of params and FLOPs (core.estimate) and of the
onnxruntime kernel time measured by the profiler (core.latency.profile_layers)."""

from __future__ import annotations

import pytest

from core.data import id_bound
from core.estimate import build_cost_model
from core.export import export_onnx
from core.latency import profile_layers
from core.metrics import flops_by_module


@pytest.mark.parametrize("method", ["channel", "unstructured"])
def test_unit_costs_partition_the_layers_they_cut(spec, method):
    cm = build_cost_model(spec.model, spec.example_input, method)
    costs = cm.unit_costs()
    assert set(costs) == {u.name for u in cm.units}
    flops = flops_by_module(spec.model, spec.example_input)
    # every unit owns at least its own named layer's FLOPs; together they never exceed the model's
    for unit in cm.units:
        assert costs[unit.name]["flops"] >= flops.get(unit.name, 0) > 0
        assert cm.owner(unit.name) == unit.name
    assert sum(c["flops"] for c in costs.values()) <= sum(flops.values())
    assert sum(c["params"] for c in costs.values()) <= sum(p.numel() for p in spec.model.parameters())


def test_profiled_time_maps_onto_the_models_layers(spec):
    onnx, _ = export_onnx(spec.model, spec.example_input)
    modules = {n for n, _ in spec.model.named_modules() if n}
    times = profile_layers(onnx, tuple(spec.example_input.shape[1:]), modules, batch=8, runs=5,
                           max_id=id_bound(spec.example_input))  # token ids for a language model
    assert times and set(times) <= modules
    assert all(t > 0 for t in times.values())
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    owned = [m for m in times if cm.owner(m) is not None]
    assert owned, "no profiled layer belongs to a prunable unit"
    # the heaviest layer by FLOPs shows up in the profile (by itself or through a fused BatchNorm)
    flops = flops_by_module(spec.model, spec.example_input)
    heaviest = max(flops, key=flops.get)
    assert any(m == heaviest or cm.owner(m) == cm.owner(heaviest) for m in times)

"""The Pareto chart shows the unpruned baseline as its own point (from the newest run's recorded baseline, named
in the legend) and formats its ticks for reading: SI units for FLOPs and bytes, a % suffix on accuracy."""

from __future__ import annotations

import pytest

from core.config import PruneConfig
from core.store_rows import Experiment
from dashboard.components.pareto import pareto_chart


def _experiment(i: int, flops: int, accuracy: float, base_flops: int = 4_854_016, created: str = "") -> Experiment:
    metrics = {"pruned": {"flops": flops, "accuracy": accuracy},
               "baseline": {"flops": base_flops, "size_bytes": 4 * base_flops, "latency_ms": 0.5, "accuracy": 0.991}}
    config = PruneConfig(model="mnist-resnet", method="channel", ratios={"conv1": 0.5})
    return Experiment(f"run-{i}", "mnist-resnet", "channel", "l1", "done", None, config, metrics, None,
                      created or f"2026-11-29T00:00:0{i}", None, None, 1, flops, 4 * flops, 0.3, accuracy, None, None)


@pytest.mark.parametrize("axis", ["flops", "size_bytes", "latency_ms"])
def test_the_baseline_is_a_point_of_its_own(axis):
    points = [_experiment(1, 2_000_000, 0.985), _experiment(2, 1_000_000, 0.97, base_flops=4_854_016)]
    fig = pareto_chart(points, points, axis)
    base = next(t for t in fig.data if t.name.startswith("baseline"))
    assert list(base.y) == [pytest.approx(99.1)]
    assert list(base.x) == [points[1].metrics["baseline"][axis]]  # the newest run's recorded baseline
    assert "run-2" in base.name


def test_ticks_read_as_si_numbers_and_percent():
    fig = pareto_chart([_experiment(1, 2_000_000, 0.985)], [], "flops")
    assert fig.layout.xaxis.tickformat == "~s" and fig.layout.yaxis.ticksuffix == "%"

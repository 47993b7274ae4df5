"""A sensitivity sweep through an executor: split into one trial per unit, merged in the driver in the local
order, cached under the same key whichever executor measured it. A stand-in executor that runs the trials in
reverse order (in this process, so no cluster is needed) checks the split and the merge; the Ray executor's own
tests (tests/test_executors_ray.py) check the same on real workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import pytest

from core import sensitivity
from core.executors import Held, LocalExecutor, Outcome, attempt
from core.sensitivity import SweepSpec, cache_path, sweep
from tests.conftest import get_spec


class ReversedExecutor:
    """Runs the trials last first (as a cluster may finish them) and hands the outcomes back in the order given."""

    name = "reversed"

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.shared = 0

    def run(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], *, on_done=None,
            cancelled=None) -> list[Outcome]:
        self.keys = [key for key, _ in items]
        outcomes: dict[int, Outcome] = {}
        for i in reversed(range(len(items))):
            outcomes[i] = attempt(fn, *items[i])
            if on_done is not None:
                on_done(outcomes[i], len(outcomes), len(items))
        return [outcomes[i] for i in range(len(items))]

    def share(self, value: Any) -> Held:
        self.shared += 1
        return Held(value)

    def close(self) -> None:
        pass


def _spec(granularity: str) -> SweepSpec:
    spec = get_spec("digits-mlp")
    return SweepSpec(spec.name, spec.fingerprint, granularity, grid=(0.25, 0.5), eval_samples=150,
                     calibration_samples=100, seed=2)


@pytest.mark.parametrize("granularity", ["unstructured", "channel"])
def test_a_sweep_split_by_unit_gives_the_local_table(tmp_path, monkeypatch, granularity):
    """One trial per unit, run in any order, merged into exactly the local executor's table; the model is shared
    once, not once per trial; progress counts grid points up to the total."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec, sweep_spec = get_spec("digits-mlp"), _spec(granularity)
    local = sweep(spec, sweep_spec, use_cache=False, executor=LocalExecutor())
    split, seen = ReversedExecutor(), []
    table = sweep(spec, sweep_spec, progress=lambda done, total: seen.append((done, total)), use_cache=False,
                  executor=split)
    pd.testing.assert_frame_equal(table, local, check_exact=True)
    assert split.keys == list(dict.fromkeys(local["unit"])) and len(split.keys) > 1  # one trial per unit
    assert split.shared == 1
    total = len(local)
    assert seen[-1] == (total, total) and all(done % len(sweep_spec.grid) == 0 for done, _ in seen)


def test_a_sweep_on_another_executor_is_a_cache_hit_for_the_local_one_and_back(tmp_path, monkeypatch):
    """The cache key is the SweepSpec alone: a table measured on one executor is read back for the other."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec, calls = get_spec("digits-mlp"), [0]
    real = sensitivity.evaluate

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sensitivity, "evaluate", counting)
    first = _spec("channel")
    measured = sweep(spec, first, executor=ReversedExecutor())
    assert calls[0] > 0 and cache_path(first).is_file()
    calls[0] = 0
    pd.testing.assert_frame_equal(sweep(spec, first, executor=LocalExecutor()), measured)
    assert calls[0] == 0

    second, unused = _spec("unstructured"), ReversedExecutor()
    measured = sweep(spec, second, executor=LocalExecutor())
    calls[0] = 0
    pd.testing.assert_frame_equal(sweep(spec, second, executor=unused), measured)
    assert calls[0] == 0 and unused.keys == [] and unused.shared == 0  # nothing sent anywhere

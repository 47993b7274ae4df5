"""bench.schedules' summaries from raw runs (no training here): the sign of 'better than one-shot' follows the
metric's direction (perplexity: lower is better), the evidence it writes is what core.schedule_evidence reads, and a
run at another budget is never compared with the grid's."""

from __future__ import annotations

import json
from dataclasses import asdict

from bench import schedules as bench
from core import schedule_evidence


def record(model: str, family: str, label: str, seed: int, value: float, metric: str = "accuracy",
           ratio: float = 0.9, scope: str = "layer", epochs: int = bench.EPOCHS) -> dict:
    return {"model": model, "family": family, "scope": scope, "ratio": ratio, "schedule": label,
            "kind": bench.SCHEDULES[label].kind, "settings": asdict(bench.SCHEDULES[label]), "seed": seed,
            "metric": metric, "value": value, "baseline": 0.99 if metric == "accuracy" else 4.3, "epochs": epochs,
            "date": "2026-11-30T10:00:00Z"}


def results(*records: dict) -> dict[str, dict]:
    return {bench.run_key(*(r[k] for k in ("model", "scope", "ratio", "schedule", "seed", "epochs"))): r
            for r in records}


ITERATIVE, DYNAMIC = "iterative (3 rounds)", "dynamic (AGP)"


def test_changes_are_positive_when_better_whichever_way_the_metric_goes(tmp_path, monkeypatch):
    runs = results(
        *(record("mnist-resnet", "cnn", bench.ONE_SHOT, s, v) for s, v in ((0, 0.96), (1, 0.97))),
        *(record("mnist-resnet", "cnn", ITERATIVE, s, v) for s, v in ((0, 0.94), (1, 0.95))),  # 2 points below
        *(record("mnist-resnet", "cnn", DYNAMIC, s, v) for s, v in ((0, 0.97), (1, 0.98), (2, 0.0))),  # seed 2 unpaired
        record("mnist-resnet", "cnn", DYNAMIC, 0, 0.10, ratio=0.8),  # no one-shot in that cell: no figure
        record("tiny-lm", "transformer", bench.ONE_SHOT, 0, 5.0, "perplexity"),
        record("tiny-lm", "transformer", DYNAMIC, 0, 4.8, "perplexity"),  # lower perplexity: better
        record("tiny-lm", "transformer", DYNAMIC, 0, 9.9, "perplexity", epochs=1),  # a shorter trial: not evidence
        record("tiny-lm", "transformer", bench.ONE_SHOT, 0, 3.0, "perplexity", epochs=1))
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(bench.evidence(runs)))
    monkeypatch.setattr(schedule_evidence, "PATH", path)
    iterative = schedule_evidence.worst("cnn", "iterative")
    assert (iterative.model, iterative.unit, iterative.seeds) == ("mnist-resnet", "points", 2)
    assert abs(iterative.change + 2.0) < 1e-9
    assert abs(schedule_evidence.worst("cnn", "dynamic").change - 1.0) < 1e-9  # over the paired seeds 0 and 1
    lm = schedule_evidence.worst("transformer", "dynamic")
    assert lm.unit == "perplexity" and abs(lm.change - 0.2) < 1e-9

    table = bench.table(runs)
    assert "0.9450 (0.9400) ✗" in table  # mean (worst), below one-shot
    assert "4.800 (4.800)" in table and "+0.20 perplexity (dynamic (AGP))" in table
    assert "9.900" in table and "| tiny-lm | layer | 90% | 1 |" in table  # the trial run has its own row


def test_coverage_names_the_missing_rows_and_calls_a_full_grid_full(monkeypatch):
    monkeypatch.setattr(bench, "available", lambda trained_only: ["mnist-resnet"])
    full = [record("mnist-resnet", "cnn", bench.ONE_SHOT, seed, 0.9, ratio=ratio, scope=scope)
            for scope in bench.SCOPES for ratio in bench.RATIOS for seed in bench.SEEDS]
    assert bench.coverage(results(*full)) == ("Every row of the grid (4: 1 models × 2 scopes × 2 ratios), "
                                              "seeds 0, 1, 2.")
    partial = bench.coverage(results(*(r for r in full if (r["scope"], r["ratio"]) != ("global", 0.8))))
    assert partial.startswith("**Partial run**: 3 of the grid's 4 rows") and partial.endswith(
        "Not measured yet: mnist-resnet global 80%.")
    one_seed_short = bench.coverage(results(*full[1:]))  # a row with 2 of the 3 seeds is not full
    assert one_seed_short.startswith("**Partial run**: 4 of the grid's 4 rows") and "none." in one_seed_short

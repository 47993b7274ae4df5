"""The strategy helper reads what the schedules benchmark measured (core/schedule_evidence.json): where the guide
says "prune gradually" but that schedule lost to one-shot on a measured model of the family, it recommends what
measured best instead and says so with the figure; where it won it keeps the guide's answer and cites the figure; a
missing or broken file changes nothing. Evidence files are written here, in tmp_path."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from core import schedule_evidence
from core.config import Schedule
from core.strategy import Situation, recommend

ITERATIVE = Situation("speed", "none", "cpu", "cnn")  # channel pruning: the guide says iterative
DYNAMIC = Situation("memory", "none", "cpu", "cnn")  # unstructured: the guide says dynamic
GUIDE_ITERATIVE = ("speed comes from removing whole units: filter pruning is natural for CNNs; no loss affordable: "
                   "prune a little, fine-tune, repeat (iterative)")


def row(kind: str, change: float, **settings) -> dict:
    return {"kind": kind, "settings": asdict(Schedule(kind, **settings)), "change": change}


def cell(scope: str, ratio: float, iterative: float, dynamic: float, seeds: int = 3) -> dict:
    return {"scope": scope, "ratio": ratio, "seeds": list(range(seeds)),
            "changes": {"iterative (3 rounds)": row("iterative", iterative), "dynamic (AGP)": row("dynamic", dynamic)}}


def write(path: Path, family: str, model: str, cells: list[dict], unit: str = "points") -> Path:
    data = {"source": "bench/schedules",
            "families": {family: {model: {"metric": "accuracy", "unit": unit, "date": "2026-11-30", "cells": cells}}}}
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def evidence(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "schedule_evidence.json"
    monkeypatch.setattr(schedule_evidence, "PATH", path)
    return path


def test_a_schedule_that_lost_is_not_recommended_and_the_reason_says_where(evidence):
    """Iterative 3.4 points below one-shot at 90% (global): one-shot, named with the model and the figure. Its win at
    80% does not count: the highest measured ratio decides."""
    write(evidence, "cnn", "mnist-resnet", [cell("layer", 0.8, 1.0, 1.0), cell("layer", 0.9, 0.2, -0.5),
                                            cell("global", 0.9, -3.4, -1.0)])
    rec = recommend(ITERATIVE)
    assert (rec.method, rec.schedule) == ("channel", "oneshot")
    assert "mnist-resnet" in rec.reason and "3.4 points below one-shot" in rec.reason and "90%" in rec.reason
    assert "iterative" in rec.reason and "3 seeds" in rec.reason and "\n" not in rec.reason


def test_the_schedule_that_measured_best_replaces_the_one_that_lost(evidence):
    """Dynamic lost (-0.8 at 90%, layer) while iterative beat one-shot at both scopes: iterative, not one-shot."""
    write(evidence, "cnn", "mnist-resnet", [cell("layer", 0.9, 0.7, -0.8), cell("global", 0.9, 0.6, 0.3)])
    rec = recommend(DYNAMIC)
    assert (rec.method, rec.schedule) == ("unstructured", "iterative")
    assert "dynamic" in rec.reason and "0.8 points below one-shot" in rec.reason
    assert "0.6 points above one-shot" in rec.reason  # the replacement's own (worst) figure


def test_a_schedule_that_won_is_kept_and_its_figure_cited(evidence):
    write(evidence, "cnn", "mnist-resnet", [cell("layer", 0.9, 0.6, 0.9), cell("global", 0.9, 1.2, 0.7)])
    rec = recommend(ITERATIVE)
    assert rec.schedule == "iterative"
    assert rec.reason.startswith(GUIDE_ITERATIVE) and "mnist-resnet" in rec.reason
    assert "0.6 points above one-shot" in rec.reason  # the smallest lead, not the best


def test_a_language_models_figure_is_in_its_own_units(evidence):
    """Perplexity: the change is already signed 'positive = better'; the reason says perplexity, not points."""
    write(evidence, "transformer", "tiny-lm", [cell("layer", 0.9, -0.1, -0.25)], unit="perplexity")
    rec = recommend(Situation("memory", "none", "cpu", "transformer"))
    assert rec.schedule == "oneshot"
    assert "tiny-lm" in rec.reason and "0.25 perplexity worse than one-shot" in rec.reason


def test_only_the_variant_tune_applies_counts(evidence):
    """A tuned variant that won says nothing about the default iterative schedule Apply would run."""
    tuned = cell("layer", 0.9, 0.0, 0.0)
    tuned["changes"] = {"iterative (5 rounds)": row("iterative", 2.0, steps=5)}
    write(evidence, "cnn", "mnist-resnet", [tuned])
    assert recommend(ITERATIVE).reason == GUIDE_ITERATIVE


def test_another_familys_evidence_does_not_apply(evidence):
    write(evidence, "mlp", "digits-mlp", [cell("layer", 0.9, -5.0, -5.0)])
    rec = recommend(ITERATIVE)
    assert (rec.schedule, rec.reason) == ("iterative", GUIDE_ITERATIVE)


def test_tolerable_loss_is_one_shot_whatever_was_measured(evidence):
    write(evidence, "cnn", "mnist-resnet", [cell("layer", 0.9, 3.0, 3.0)])
    assert recommend(Situation("speed", "tolerable", "cpu", "cnn")).schedule == "oneshot"


@pytest.mark.parametrize("content", [
    None,  # no file
    "{not json",
    "[1, 2]",
    json.dumps({"families": {"cnn": {"mnist-resnet": {"unit": "points", "cells": [{"scope": "layer"}]}}}}),
    json.dumps({"families": {"cnn": {"mnist-resnet": {"unit": "points", "cells": [
        {"scope": "layer", "ratio": 0.9, "seeds": [0], "changes": {"x": {**row("iterative", 0.0), "change": "-3"}}},
        {"scope": "layer", "ratio": float("nan"), "seeds": [0], "changes": {"x": row("iterative", -3.0)}}]}}}}),
    json.dumps({"families": ["cnn"]}),
])
def test_no_or_broken_evidence_leaves_the_guides_answer(evidence, content):
    if content is not None:
        evidence.write_text(content)
    rec = recommend(ITERATIVE)
    assert (rec.method, rec.schedule, rec.reason) == ("channel", "iterative", GUIDE_ITERATIVE)
    assert recommend(DYNAMIC).schedule == "dynamic"


def test_a_schedule_that_lost_at_the_grid_budget_but_won_with_a_longer_one_is_named_with_that_budget(evidence):
    """Iterative lost at 3 epochs (-3.1, layer) and beat one-shot with 10 (+0.6, layer): the verdict is the grid's
    (one-shot), and the reason says gradual pruning needs the longer budget, with its figure and the epochs."""
    short = cell("layer", 0.9, -3.1, -0.4) | {"epochs": 3}
    long = cell("layer", 0.9, 0.6, 0.2) | {"epochs": 10}
    write(evidence, "cnn", "mnist-resnet", [short, cell("global", 0.9, 0.1, 0.1) | {"epochs": 3}, long])
    rec = recommend(ITERATIVE)
    assert rec.schedule == "oneshot"
    assert "3.1 points below one-shot" in rec.reason and "3 epochs" in rec.reason
    assert "with 10 epochs of fine-tuning, iterative measured 0.6 points above one-shot" in rec.reason
    assert "\n" not in rec.reason


def test_a_longer_budget_alone_is_not_the_verdict(evidence):
    """Only 10-epoch cells (no grid budget measured): they are the verdict, cited with their epochs."""
    write(evidence, "cnn", "mnist-resnet", [cell("layer", 0.9, 0.6, 0.2) | {"epochs": 10}])
    rec = recommend(ITERATIVE)
    assert rec.schedule == "iterative" and "10 epochs" in rec.reason


def test_a_row_recorded_before_a_schedule_field_existed_is_judged_as_the_default(evidence):
    """Schedule.last_round came after most of the benchmark's runs: their settings lack it, and they measured the
    default (an equal split). They stay evidence; a row that set the new field is still a different variant."""
    old = cell("layer", 0.9, -3.4, -1.0)
    for change in old["changes"].values():
        del change["settings"]["last_round"]
    old["changes"]["iterative (80% last)"] = row("iterative", 5.0, last_round=0.8)
    write(evidence, "cnn", "mnist-resnet", [old])
    figure = schedule_evidence.worst("cnn", "iterative")
    assert figure is not None and figure.change == -3.4 and figure.label == "iterative (3 rounds)"

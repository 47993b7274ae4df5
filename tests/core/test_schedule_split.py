"""An iterative schedule's budget split (Schedule.last_round): the optimiser steps each round trains for, what a config
says about it, and that the rounds of a run really train for those steps."""

from __future__ import annotations

import pytest

from core import schedule
from core.cli import _settings, build_parser, main
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.errors import PruneLabError
from core.plan import plan
from tests.conftest import get_spec


@pytest.mark.parametrize("budget", [1, 2, 63, 64, 189, 1000])
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
@pytest.mark.parametrize("last", [None, 0.05, 0.5, 0.8, 0.95])
def test_the_rounds_share_exactly_the_budget(budget, steps, last):
    split = Schedule("iterative", steps=steps, last_round=last).split(budget)
    assert len(split) == steps and sum(split) == budget and min(split) >= 0
    if steps > 1 and last is not None:
        assert abs(split[-1] - budget * last) <= (steps - 1) + 0.5  # the earlier rounds' remainder goes last
        assert len(set(split[:-1])) == 1  # the earlier rounds share the rest evenly


def test_an_equal_split_is_what_versions_before_6_did():
    assert Schedule("iterative", steps=3).split(63) == [21, 21, 21]
    assert Schedule("iterative", steps=3).split(64) == [21, 21, 22]
    assert Schedule("iterative", steps=3, last_round=0.8).split(63) == [6, 6, 51]
    assert Schedule("oneshot", last_round=0.8).split(63) == [63]  # one round takes the whole budget


@pytest.mark.parametrize("bad", [0, 0.01, 0.99, 1, 1.5, -0.2, "0.8", True, float("nan")])
def test_a_last_round_share_outside_its_range_is_one_line(bad):
    with pytest.raises(PruneLabError, match="last_round must be a number from 0.05 to 0.95"):
        Schedule("iterative", last_round=bad)


def test_a_config_round_trips_its_last_round_and_a_version_5_file_reads_as_an_equal_split():
    config = PruneConfig("digits-mlp", "unstructured", {"net.0": 0.5}, finetune=FinetuneConfig(epochs=1),
                         schedule=Schedule("iterative", steps=3, last_round=0.8))
    again = PruneConfig.from_json(config.to_json())
    assert again == config and again.schedule.last_round == 0.8
    old = config.to_dict()
    old["version"] = 5
    del old["schedule"]["last_round"]
    assert PruneConfig.from_dict(old).schedule.last_round is None


def test_each_round_trains_for_its_share(monkeypatch):
    spec = get_spec("digits-mlp")
    ratios, _ = plan(spec, "unstructured", 0.8)
    config = PruneConfig(spec.name, "unstructured", ratios, model_fingerprint=spec.fingerprint,
                         finetune=FinetuneConfig(epochs=1), schedule=Schedule("iterative", steps=3, last_round=0.8))
    trained_for = []
    real_fit = schedule.fit

    def counting_fit(*args, steps=None, **kwargs):
        trained_for.append(steps)
        return real_fit(*args, steps=steps, **kwargs)

    monkeypatch.setattr(schedule, "fit", counting_fit)
    schedule.train(spec, config)
    budget = -(-len(spec.split.train_x) // 64)
    assert trained_for == config.schedule.split(budget) and trained_for[-1] > trained_for[0]


def test_the_command_line_carries_the_share_and_refuses_one_outside_its_range(tmp_path, capsys):

    args = build_parser().parse_args(["prune", "digits-mlp", "--method", "unstructured", "--ratio", "0.5",
                                      "--schedule", "iterative", "--last-round", "0.8", "--out", str(tmp_path)])
    assert _settings(args)["schedule"] == Schedule("iterative", last_round=0.8)
    code = main(["prune", "digits-mlp", "--method", "unstructured", "--ratio", "0.5", "--schedule", "iterative",
                 "--last-round", "0.99", "--finetune-epochs", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        "prunelab: error: schedule last_round must be a number from 0.05 to 0.95, got 0.99"]
    assert not (tmp_path / "out").exists()

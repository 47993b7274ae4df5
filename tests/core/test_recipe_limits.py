"""A recipe's stage count is bounded like every other config setting (issue 11 audit, item 6).

A config's `then` list was unbounded: 10,000 stages (a 0.5 MB file) passed validation, `prunelab apply` set
off pruning the model 10,001 times (about four stages a second on digits-mlp, its memory growing), and the
config.json it saved for the run was 8 MB, over the 1 MB a config file may have, so the run could never be
replayed. The count must be refused before any stage is built, in one line naming the range, the same way
by the CLI and the dashboard's reader, and a recipe at the limit must save a config that reads back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import LIMITS, MAX_CONFIG_BYTES, PruneConfig, fmt_limit, read_config_bytes
from core.errors import PruneLabError

ROOT = Path(__file__).resolve().parents[2]
STAGE = {"method": "unstructured", "ratios": {"fc1": 0.1}}


def _recipe(stages: int) -> dict:
    """A digits-mlp config of `stages` stages in all: itself and stages - 1 in `then`."""
    return {**PruneConfig("digits-mlp", "unstructured", {"fc1": 0.1}).to_dict(), "then": [STAGE] * (stages - 1)}


def test_too_many_stages_are_refused_with_the_range():
    with pytest.raises(PruneLabError) as caught:
        read_config_bytes(json.dumps(_recipe(10_001)).encode())  # the reader the CLI and the dashboard share
    message = str(caught.value)
    low, high = LIMITS["stages"]
    assert "stages" in message and f"from {fmt_limit(low)} to {fmt_limit(high)}" in message and "10001" in message
    assert len(message.splitlines()) == 1 and len(message) < 300


def test_a_recipe_at_the_limit_is_accepted_and_its_saved_config_reads_back(tmp_path):
    high = int(LIMITS["stages"][1])
    config = PruneConfig.from_dict(_recipe(high))
    assert len(config.stages()) == high
    config.save(tmp_path / "config.json")
    assert (tmp_path / "config.json").stat().st_size <= MAX_CONFIG_BYTES
    assert PruneConfig.load(tmp_path / "config.json") == config
    with pytest.raises(PruneLabError, match="stages"):
        PruneConfig.from_dict(_recipe(high + 1))


def test_cli_refuses_a_ten_thousand_stage_recipe_before_any_work(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_recipe(10_001)))
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "core.cli", "apply", str(path), "--latency-batches", "1",
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # a guard: the refusal takes seconds, 10,001 stages take an hour
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunelab: error: ") and "stages" in lines[0], lines
    assert not (tmp_path / "out").exists()

"""The Experiments page with a damaged store (issue 11, item 5): an unreadable row is listed by id with its reason
and the rest shown; a corrupt database file is moved aside (nothing deleted) and the page says where."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core import experiment, runs
from core.config import PruneConfig
from core.experiment import RunOutput
from core.store import Store
from tests.conftest import get_spec
from tests.dashboard.test_app import open_app

MODEL = "digits-mlp"


@pytest.fixture(scope="module")
def output() -> RunOutput:
    """One measured digits-mlp run, written per test."""
    spec = get_spec(MODEL)
    return experiment.run(spec, PruneConfig(MODEL, "channel", {"fc1": 0.5}, model_fingerprint=spec.fingerprint))


def _finished(out: RunOutput) -> str:
    """A finished run with files under <workspace>/runs, recorded as the app records one; its id."""
    folder = runs.new_run_dir(MODEL, "channel")
    with runs.record(folder, out.config) as finish:
        out.write(folder)
        finish(json.loads(out.metrics_json()))
    return Store().id_for_folder(folder)


def _texts(at) -> str:
    parts = [e.value for kind in ("warning", "info", "caption", "markdown", "error") for e in getattr(at, kind)]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(str(p) for p in parts)


def test_an_unreadable_row_is_named_and_the_rest_listed(monkeypatch, tmp_path, output):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    good, bad = _finished(output), _finished(output)
    conn = sqlite3.connect(tmp_path / "experiments.db")
    with conn:  # a config written by a newer PruneLab
        conn.execute("UPDATE experiments SET config_json = ? WHERE id = ?", (json.dumps({"version": 99}), bad))
    conn.close()
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    assert not at.exception, [e.value for e in at.exception]
    listed = next(df.value for df in at.dataframe if list(df.value.columns[:2]) == ["id", "method"])
    assert list(listed["id"]) == [good] and list(listed["params"]) == [output.pruned["params"]]
    unreadable = next(df.value for df in at.dataframe if "reason" in df.value.columns)
    assert list(unreadable["id"]) == [bad] and "config version 99" in unreadable["reason"][0]


def test_a_corrupt_store_is_moved_aside_and_the_page_says_where(monkeypatch, tmp_path, output):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    kept = _finished(output)
    db = tmp_path / "experiments.db"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 500)
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    assert not at.exception, [e.value for e in at.exception]
    (moved,) = tmp_path.glob("experiments.db.corrupt-*")
    assert moved.read_bytes() == b"garbage" * 500
    assert str(moved) in _texts(at)
    listed = next(df.value for df in at.dataframe if list(df.value.columns[:2]) == ["id", "method"])
    assert list(listed["id"]) == [kept]  # found again in its run folder

"""core.search_runs: a model's search folders (newest first, another model's left out, a folder without a readable
search.json skipped) and the link a search job writes to the search it started (not an older one, nor one of
another model)."""

from __future__ import annotations

import json
from pathlib import Path

from core import search_runs
from core.search_report import SEARCH_FILE


def _search(home: Path, name: str, model: str) -> Path:
    folder = home / "runs" / name
    folder.mkdir(parents=True)
    (folder / SEARCH_FILE).write_text(json.dumps({"id": name, "spec": {"model": model}, "trials": []}))
    return folder


def test_folders_are_the_models_searches_newest_first(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    old = _search(tmp_path, "20261130-100000-digits-mlp-search", "digits-mlp")
    new = _search(tmp_path, "20261130-110000-digits-mlp-search", "digits-mlp")
    _search(tmp_path, "20261130-120000-mnist-resnet-search", "mnist-resnet")
    broken = tmp_path / "runs" / "20261130-130000-digits-mlp-search"
    broken.mkdir()
    (broken / SEARCH_FILE).write_text("{not json")
    assert search_runs.folders("digits-mlp") == [new, old]
    assert search_runs.read(broken) is None


def test_a_job_links_the_search_it_started(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    _search(tmp_path, "20261130-100000-digits-mlp-search", "digits-mlp")  # an older search
    job = tmp_path / "jobs" / "search" / "digits-mlp" / "_"
    job.mkdir(parents=True)
    linker = search_runs.Linker("digits-mlp", job)
    assert not linker() and search_runs.linked(job) is None  # nothing new yet
    _search(tmp_path, "20261130-110000-mnist-resnet-search", "mnist-resnet")  # another model's
    assert not linker()
    mine = _search(tmp_path, "20261130-110001-digits-mlp-search", "digits-mlp")
    assert linker() and search_runs.linked(job) == mine
    _search(tmp_path, "20261130-110002-digits-mlp-search", "digits-mlp")  # a later one does not move the link
    assert linker() and search_runs.linked(job) == mine

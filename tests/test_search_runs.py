"""core.search_runs: a model's search folders (newest first, another model's left out, a folder without a readable
search.json skipped) and the link a search job writes to the search it started (not one another process started
just before)."""

from __future__ import annotations

import json
from pathlib import Path

from core import search, search_runs
from core.executors import LocalExecutor
from core.job_tasks import run_search_job
from core.search_report import SEARCH_FILE
from core.search_spec import SearchSpec
from tests.conftest import get_spec


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


def test_a_job_links_the_search_it_started_not_one_another_process_started_first(monkeypatch, tmp_path):
    """The job's link names its own search even when a search of the same model (e.g. a CLI search) appears
    between the job's start and its own search folder's: a link guessed from new folders took that one."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    job = tmp_path / "jobs" / "search" / "digits-mlp" / "_"
    job.mkdir(parents=True)
    real = search.new_run_dir

    def another_first(model: str, what: str) -> Path:
        _search(tmp_path, "20000101-000000-digits-mlp-search", model)  # another process's search, just before
        return real(model, what)

    monkeypatch.setattr(search, "new_run_dir", another_first)
    monkeypatch.setattr("core.job_tasks.executors.get", lambda name, address=None: LocalExecutor())
    spec = SearchSpec("digits-mlp", targets=(1000.0,), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    out = run_search_job(get_spec("digits-mlp"), lambda stage, done, total: None, spec, job_folder=str(job))
    assert search_runs.linked(job) == Path(out["folder"])

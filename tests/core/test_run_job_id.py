"""The Tune page's run job reports the id the store gave its run, which Results selects by. The store makes an id
unique (a `-2` suffix) when the folder's name is already an id — e.g. a run folder deleted by hand while its record
stays, and a new run in the same second gets the same folder name. The job reported the folder's name, which is the
older run's id: the page then announced and showed the wrong run's numbers."""

from __future__ import annotations

import shutil

from core import experiment, job_tasks
from core.config import FinetuneConfig, PruneConfig
from core.store import Store
from core.workflows import record
from tests.conftest import get_spec

MODEL = "digits-mlp"


def _config(ratio: float) -> PruneConfig:
    spec = get_spec(MODEL)
    return PruneConfig(model=MODEL, method="channel", ratios={"fc1": ratio}, model_fingerprint=spec.fingerprint,
                       finetune=FinetuneConfig(epochs=0))


def test_the_run_job_returns_the_store_id_of_its_own_run(monkeypatch):
    spec = get_spec(MODEL)
    base = experiment.baseline(spec)
    first_id = job_tasks.run_and_record(spec, lambda *_: None, _config(0.25), None, base, None)
    folder = Store().get(first_id).folder
    shutil.rmtree(folder)  # deleted by hand: the record stays
    monkeypatch.setattr(record, "new_run_dir", lambda *_: (folder.mkdir(), folder)[1])  # the same name again
    second_id = job_tasks.run_and_record(spec, lambda *_: None, _config(0.5), None, base, None)
    assert second_id != first_id
    assert Store().get(second_id).config.ratios == {"fc1": 0.5}  # the job's id names its own run

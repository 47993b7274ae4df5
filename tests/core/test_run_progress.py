"""A run started from the dashboard shows one bar for the whole run: core.progress.overall turns run()'s per-phase
reports (stage, done, total — each phase counting from zero) into one fraction of the whole run that only grows,
with the stage's name, and the time left is estimated from the whole job's rate, not the current stage's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core import jobs
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.experiment import run
from core.jobs import JobStatus, ModelRef
from core.run_progress import TICKS, overall_progress
from tests.conftest import get_spec


@pytest.mark.slow  # a real two-round run with fine-tuning: ~35 s on 2 busy cores
def test_a_run_reports_one_growing_fraction_with_its_stage_names():
    spec = get_spec("digits-mlp")
    config = PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5}, model_fingerprint=spec.fingerprint,
                         finetune=FinetuneConfig(epochs=1), schedule=Schedule(kind="iterative", steps=2))
    seen: list[tuple[str, int, int]] = []
    run(spec, config, overall_progress(lambda stage, done, total: seen.append((stage, done, total)), config))
    assert len({total for _, _, total in seen}) == 1  # one scale for the whole run
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == seen[-1][2]  # never resets, ends full
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    assert stages[:3] == ["measuring baseline", "pruning (round 1/2)", "fine-tuning (round 1/2)"]
    assert stages[-1] == "done"
    tuning = [d for s, d, _ in seen if s == "fine-tuning (round 1/2)"]
    assert tuning[0] < tuning[-1]  # the bar moves during a phase, too


def test_time_left_is_the_whole_jobs_rate_not_the_stages():
    # half the run done in 60 s (whatever stage it is in): about 60 s are left
    job = JobStatus(Path("."), "j", "run", "running", "fine-tuning", 50, 100, started=1000.0)
    assert job.seconds_left(now=1060.0) == 60.0


@pytest.mark.slow  # a real run in a worker process: ~30 s on 2 busy cores
def test_a_run_job_reports_the_whole_runs_percent(tmp_path, monkeypatch):
    """The worker's run task (core.job_tasks) reports through overall_progress: every progress the page reads is
    on the run's one scale (percent) and never goes back."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    spec = get_spec("digits-mlp")
    config = PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5}, model_fingerprint=spec.fingerprint,
                         finetune=FinetuneConfig(epochs=2))
    folder = tmp_path / "run"
    jobs.start(folder, "run", ModelRef(spec.name), {"config": config, "prediction": None, "base": None, "lut": None})
    seen = []
    while (job := jobs.status(folder)) is not None and job.active:
        if job.state == "running" and job.total > 1:
            seen.append((job.stage, job.done, job.total))
        time.sleep(0.1)
    assert job is not None and (job.state, job.error) == ("done", None)
    assert seen and {total for _, _, total in seen} == {TICKS}
    done = [d for _, d, _ in seen]
    assert done == sorted(done)

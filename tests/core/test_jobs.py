"""Background jobs (core.jobs) run in a worker process of their own: the result is the same as in-process work, a
second start finds the running job (no duplicate), cancel and kill end it and say so, a task's error comes back as
its one line. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core import jobs
from core.jobs import ModelRef
from core.processes import alive
from core.sensitivity import SweepSpec, cache_path, read_table, sweep
from tests.conftest import get_spec

TINY = {"grid": (0.5,), "eval_samples": 100, "calibration_samples": 64}
# long enough to watch, cancel and kill: 171 pruned and evaluated mnist-resnet copies (digits-mlp takes <1 s)
LONG = {"grid": tuple(round(0.05 * i, 2) for i in range(1, 20)), "eval_samples": 2000, "calibration_samples": 256}
SLOW = "mnist-resnet"


def _spec(model: str = "digits-mlp", **kw) -> SweepSpec:
    spec = get_spec(model)
    return SweepSpec(spec.name, spec.fingerprint, "channel", **kw)


def _long() -> dict:
    return {"sweep_spec": _spec(SLOW, **LONG)}


def _wait(folder: Path, until, timeout: float = 180.0) -> jobs.JobStatus:
    end = time.time() + timeout
    while time.time() < end:
        job = jobs.status(folder)
        if job is not None and until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job in {folder} did not get there in {timeout} s: {jobs.status(folder)}; "
                         f"log: {(folder / 'log.txt').read_text(errors='replace')[-2000:]}")


def _pid(folder: Path) -> dict:
    return json.loads((folder / "pid.json").read_text())


def test_a_sweep_job_runs_in_another_process_and_equals_the_in_process_sweep(tmp_path):
    folder = tmp_path / "sweep"
    job = jobs.start(folder, "sweep", ModelRef("digits-mlp"), {"sweep_spec": _spec(**TINY)})
    assert job.active
    done = _wait(folder, lambda j: not j.active)
    assert (done.state, done.error) == ("done", None)
    assert _pid(folder)["pid"] != os.getpid()
    from_worker = read_table(cache_path(_spec(**TINY)))
    here = sweep(get_spec("digits-mlp"), _spec(**TINY), use_cache=False)
    pd.testing.assert_frame_equal(from_worker.reset_index(drop=True), here.reset_index(drop=True))


def test_a_second_start_finds_the_running_job_and_cancel_ends_its_process(tmp_path):
    folder = tmp_path / "sweep"
    first = jobs.start(folder, "sweep", ModelRef(SLOW), _long())
    running = _wait(folder, lambda j: j.state == "running" and j.done > 0)
    second = jobs.start(folder, "sweep", ModelRef(SLOW), _long())
    assert second.job_id == first.job_id == running.job_id  # no duplicate
    pid = _pid(folder)
    jobs.cancel(folder)
    end = _wait(folder, lambda j: not j.active)
    assert (end.state, end.error) == ("cancelled", "cancelled")
    deadline = time.time() + 20
    while alive(pid["pid"], pid["started"]) and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(pid["pid"], pid["started"])
    third = jobs.start(folder, "sweep", ModelRef("digits-mlp"), {"sweep_spec": _spec(**TINY)})
    assert third.job_id != first.job_id  # a finished slot takes a new job
    assert _wait(folder, lambda j: not j.active).state == "done"


def test_a_killed_worker_is_reported_lost_not_running(tmp_path):
    folder = tmp_path / "sweep"
    jobs.start(folder, "sweep", ModelRef(SLOW), _long())
    _wait(folder, lambda j: j.state == "running")
    os.kill(_pid(folder)["pid"], signal.SIGKILL)
    lost = _wait(folder, lambda j: not j.active, timeout=30)
    assert lost.state == "lost" and "stopped without finishing" in lost.error


def test_a_task_error_comes_back_as_its_one_line(tmp_path):
    folder = tmp_path / "sweep"
    jobs.start(folder, "sweep", ModelRef("no-such-model"), {"sweep_spec": _spec(**TINY)})
    failed = _wait(folder, lambda j: not j.active)
    assert failed.state == "failed" and "no-such-model" in failed.error and "\n" not in failed.error


def test_progress_reports_stage_counts_and_time_left(tmp_path):
    folder = tmp_path / "sweep"
    jobs.start(folder, "sweep", ModelRef(SLOW), _long())
    job = _wait(folder, lambda j: j.stage == "sensitivity sweep" and 0 < j.done < j.total)
    assert job.total > 1 and 0 < job.fraction < 1
    assert job.seconds_left() is not None and job.seconds_left() > 0
    jobs.cancel(folder)
    _wait(folder, lambda j: not j.active)


@pytest.mark.parametrize("args", [{"sweep_spec": lambda: None}])
def test_arguments_that_cannot_reach_a_worker_are_refused_before_anything_starts(tmp_path, args):
    folder = tmp_path / "sweep"
    with pytest.raises(Exception, match="cannot go to a worker"):
        jobs.start(folder, "sweep", ModelRef("digits-mlp"), args)
    assert not folder.exists()


def test_a_worker_stops_when_the_server_that_started_it_is_gone(tmp_path):
    folder = tmp_path / "sweep"
    starter = (f"from core import jobs; from core.jobs import ModelRef; from core.sensitivity import SweepSpec; "
               f"from core.models import load; s = load({SLOW!r}); "
               f"jobs.start(__import__('pathlib').Path({str(folder)!r}), 'sweep', ModelRef({SLOW!r}), "
               f"{{'sweep_spec': SweepSpec(s.name, s.fingerprint, 'channel', **{LONG!r})}})")
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=300)  # starts the job, then exits
    pid = _pid(folder)
    _wait(folder, lambda j: not j.active, timeout=60)
    assert jobs.status(folder).state == "lost", jobs.status(folder).error
    assert not alive(pid["pid"], pid["started"])

"""Long work started from a page (a sensitivity sweep; prune, fine-tune, measure; deploy; timing tables) runs in
a worker process (core.jobs), one job per task and model. The page only watches it: a fragment reads the job's
small progress file about once a second (milliseconds of work), so the worker keeps its cores; a refresh or a
second tab finds the running job in its slot and shows its progress instead of offering to start a duplicate.
When the job ends the fragment reruns the app once, and the page reads the result (which stays until the next
job of that task and model starts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from core import jobs
from core.jobs import JobStatus, ModelRef
from dashboard import cache, state
from dashboard.components.text import md

POLL_S = 1.0  # how often a page looks at a running job's progress file


def _ref(name: str) -> ModelRef:
    """What loads the model `name` in a worker (a user's model by the arguments they gave the sidebar)."""
    args = cache.user_model(name)
    if args is None:
        return ModelRef(name)
    return ModelRef(name, args.ref, args.weights, args.data, args.trust_pickle)


def start(task: str, name: str, key: str = "", **kwargs: Any) -> JobStatus:
    """Start task for model `name` (request `key`) in a worker, or find the one already running there."""
    return jobs.start(jobs.slot(task, name, key), task, _ref(name), kwargs)


def current(task: str, name: str, key: str | None = "") -> JobStatus | None:
    """The job of task for model `name` in slot `key`; key None: the latest job of any key (after a refresh)."""
    return jobs.latest(task, name) if key is None else jobs.status(jobs.slot(task, name, key))


def running(task: str, name: str, key: str | None = "") -> bool:
    job = current(task, name, key)
    return job is not None and job.active


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_text(job: JobStatus, now: float) -> str:
    """'stage (done/total) · 1 min 05 s so far, about 40 s left' (the estimate once a step is done)."""
    left = job.seconds_left(now)
    tail = f", about {_duration(left)} left" if left is not None else ""
    return f"{md(job.stage)} ({job.done}/{job.total}) · {_duration(now - job.started)} so far{tail}"


@st.fragment(run_every=POLL_S)
def _watch(task: str, folder: str, job_id: str) -> None:
    job = jobs.status(Path(folder))
    if job is None or job.job_id != job_id or not job.active:
        st.rerun()  # it ended (or was replaced): the whole page draws its outcome
    st.progress(job.fraction, text=progress_text(job, time.time()))
    st.button("Cancel", key=state.cancel_key(task), on_click=jobs.cancel, args=(job.folder,),
              help="Stops the worker process; nothing it had not finished is kept.")


def panel(task: str, name: str, key: str | None = "") -> tuple[Any, str | None]:
    """Draw the job's progress (with Cancel) while it runs; return (result, error) once it has finished — they
    stay until the next job in its slot starts. key None: the latest job of this task and model."""
    job = current(task, name, key)
    if job is None:
        return None, None
    if job.active:
        _watch(task, str(job.folder), job.job_id)
        return None, None
    return job.result, job.error

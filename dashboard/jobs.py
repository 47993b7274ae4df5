"""Long work (a sensitivity sweep; prune, fine-tune, export, measure) runs in a background thread.

A Streamlit script run stops whenever the user touches a widget; work started from it would die with
it. The thread instead reports progress into its Job object (kept in the session's state) and writes
its results to the workspace, so neither a slider move nor a page refresh loses the work. `panel`
draws a job's progress and, when it ends, hands its result to the page and redraws the app.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from core.errors import PruneLabError


@dataclass
class Job:
    """Progress and outcome of one background task; written by the worker, read by the page."""

    stage: str = "starting"
    done: int = 0
    total: int = 1
    result: Any = None
    error: str | None = None
    finished: bool = False
    _thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, max(total, 1)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total)


def start(key: str, work: Callable[[Callable[[str, int, int], None]], Any]) -> Job:
    """Run work(progress) in a daemon thread, keep its Job in st.session_state[key], return it."""
    job = Job()

    def target() -> None:
        try:
            job.result = work(job.progress)
        except PruneLabError as e:
            job.error = str(e)
        except Exception as e:  # a bug: keep the app alive, show what happened
            job.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            job.finished = True

    st.session_state.pop(f"{key}:done", None)
    st.session_state.pop(f"{key}:error", None)
    job._thread = threading.Thread(target=target, name=f"prunelab-{key}", daemon=True)
    job._thread.start()
    st.session_state[key] = job
    return job


def running(key: str) -> bool:
    return st.session_state.get(key) is not None


@st.fragment(run_every=0.5)
def _poll(key: str) -> None:
    job = st.session_state.get(key)
    if job is None:  # finished in an earlier poll
        return
    if not job.finished:
        st.progress(job.fraction, text=f"{job.stage} ({job.done}/{job.total})")
        return
    st.session_state[key] = None
    st.session_state[f"{key}:error" if job.error else f"{key}:done"] = job.error or job.result
    st.rerun()


def panel(key: str) -> tuple[Any, str | None]:
    """Draw the job's progress while it runs (polling twice a second); return (result, error) of the
    last finished job under this key — each stays until the next job starts."""
    if running(key):
        _poll(key)
    return st.session_state.get(f"{key}:done"), st.session_state.get(f"{key}:error")

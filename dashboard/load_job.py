"""Loading a user's model from the sidebar without letting it hold the session: check-load first, killable.

The sidebar's Load starts a core.probe.Probe — the model loaded once in a child process with a time limit
(PRUNELAB_LOAD_TIMEOUT_S) and a memory limit — kept in this session's state. The script run then *follows* it:
it draws a Cancel button and a status line, and waits on the child one second at a time; each status update
lets Streamlit end the run when the user clicks (Cancel, or anything else), and the next run finds the job in
the session's state and follows it again. The load stops on Cancel, at the time limit, and, through the probe's
own watcher thread, when this session no longer exists (a closed tab) — nothing keeps running for a session
nobody sees. Only a model that loaded in the child is then loaded in the server, by dashboard.cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from streamlit.delta_generator import DeltaGenerator

from core.limits import LOAD_TIMEOUT
from core.probe import Outcome, Probe
from dashboard import state
from dashboard.cache import UserModel
from dashboard.components.text import md


@dataclass(frozen=True)
class LoadJob:
    args: UserModel
    probe: Probe


def start(args: UserModel) -> LoadJob:
    """Start check-loading args in a child process (ending any load this session had running)."""
    abandon()
    probe = Probe(args.ref, args.weights, args.data, args.trust_pickle, alive=_session_alive())
    job = LoadJob(args, probe)
    state.set_load_job(job)
    return job


def current() -> LoadJob | None:
    """The load this session is running, if any."""
    return state.load_job()


def abandon() -> None:
    """Stop this session's running load (the user left the form, or loads something else)."""
    job = state.take_load_job()
    if job is not None:
        job.probe.cancel()


def follow(box: DeltaGenerator, job: LoadJob) -> Outcome:
    """Draw Cancel and the elapsed time in box while the load runs; return how it ended."""
    if box.button("Cancel", key=state.OWN_CANCEL, help="Stop loading this model (its process is killed)."):
        job.probe.cancel()
    status = box.empty()
    limit = LOAD_TIMEOUT.show(job.probe.timeout)
    while True:  # each status update lets Streamlit end this run when the user clicks; the next run follows on
        seconds = time.monotonic() - job.probe.started
        status.caption(md(f"Loading {job.args.ref} in a separate process… {seconds:.0f} s (stopped after {limit})"))
        if (outcome := job.probe.wait(1.0)) is not None:
            break
    status.empty()
    state.set_load_job(None)
    return outcome


def _session_alive() -> Callable[[], bool] | None:
    """Whether this browser session still exists, as a function the probe's watcher thread can call; None when
    there is no Streamlit server (AppTest, bare mode): then only the time limit and Cancel stop a load."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return None
    instance, session = runtime.get_instance(), ctx.session_id
    return lambda: instance.is_active_session(session)

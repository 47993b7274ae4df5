"""Search page: the grid of budget-solve -> apply trials (targets x strategies x seeds, core.search) started as a
background job on the chosen executor, its trials shown as they land, and any finished search of the model again.

The search runs in a job's worker process (core.jobs, task "search"), never in the Streamlit process. While it
runs, dashboard.jobs draws its progress, time left and Cancel, and a fragment here redraws the trials table and
the Pareto chart from the search's search.json every two seconds (a small file, parsed once per version). The
job links its search folder into the job's folder (core.search_runs), so a refresh finds the running search
through the job; a finished search is picked from the model's search folders, the newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core import jobs as core_jobs
from core import search_runs
from core.errors import PruneLabError
from core.jobs import JobStatus
from dashboard import cache, jobs, state
from dashboard.components import search_form, search_trials
from dashboard.components.text import md
from dashboard.components.training import missing_training_data

TASK = "search"
TRIALS_POLL_S = 2.0  # trials land seconds apart; a redraw costs the server ~20 ms (chart: 9 built, 11 serialised)


def render(name: str) -> None:
    if not _searchable(name):
        return
    job = jobs.current(TASK, name)
    running = job is not None and job.active
    search_form.draw(disabled=running)
    st.button("Start search", type="primary", key=state.SEARCH_START, disabled=running, on_click=_start,
              args=(name,), help="Runs in a background process; this page shows the trials as they finish.")
    kind, text = state.message(state.SEARCH_MESSAGE, name)
    if text:
        st.error(md(text))
    if running:
        jobs.panel(TASK, name)  # progress, time left and Cancel; reruns the page once the job ends
        _live(str(job.folder), job.job_id)  # type: ignore[union-attr]
        return
    _, error = jobs.panel(TASK, name)
    if error and job is not None and job.state == "failed":
        st.error(f"The search failed: {md(error)}")
    _finished(name, job)


def _searchable(name: str) -> bool:
    """Whether this model can be searched here; says why not."""
    spec = cache.spec(name)
    if not spec.has_data:
        st.info(f"{md(name)} has no data set (random weights): a search compares measured accuracy and is not "
                "available for it.")
        return False
    if missing := missing_training_data(spec, "a search", cache.display_name(name)):
        st.info(md(missing))
        return False
    return True


def _start(name: str) -> None:
    """on_click: the form's values checked (one line if not), then the search started as a job."""
    try:
        asked = search_form.request(name)
    except PruneLabError as e:
        state.say(state.SEARCH_MESSAGE, name, "error", str(e))
        return
    state.unsay(state.SEARCH_MESSAGE, name)
    jobs.start(TASK, name, search=asked.search, executor=asked.executor, address=asked.address,
               job_folder=str(core_jobs.slot(TASK, name)))


@st.fragment(run_every=TRIALS_POLL_S)
def _live(job_folder: str, job_id: str) -> None:
    """The running search's trials, redrawn from its search.json (the job's own fragment reruns the page when the
    job ends)."""
    job = core_jobs.status(Path(job_folder))
    if job is None or job.job_id != job_id or not job.active:
        return
    folder = search_runs.linked(Path(job_folder))
    record = _read(folder) if folder is not None else None
    if record is None:
        st.caption("Preparing the search: loading the model, then solving each trial's budget…")
        return
    _draw(record, "running")


def _read(folder: Path) -> dict[str, Any] | None:
    try:
        mtime = (folder / search_runs.SEARCH_FILE).stat().st_mtime_ns
    except OSError:
        return None
    return cache.search_record(str(folder), mtime)


def _finished(name: str, job: JobStatus | None) -> None:
    """A search of the model that is not running: the one just ended (picked once), or any chosen."""
    folders = {f.name: f for f in search_runs.folders(name)}
    if not folders:
        st.info("No search of this model yet: choose targets and strategies above and start one. Each trial is "
                "pruned, fine-tuned and measured, and recorded in the experiment store.")
        return
    state.follow_newest_search(name, list(folders))
    picked = st.selectbox("Search", list(folders), key=state.SEARCH_PICK, help="This model's searches, newest first.")
    folder = folders[picked]
    record = _read(folder)
    if record is None:
        st.error(f"The search record {md(folder / search_runs.SEARCH_FILE)} cannot be read.")
        return
    status = _status(record, folder, job)
    _say_status(record, status)
    _draw(record, status)
    st.caption(f"Recorded in {md(folder)}: search.json, pareto.csv and pareto.html (every cost axis).")


def _status(record: dict[str, Any], folder: Path, job: JobStatus | None) -> str:
    """The search's status as the page tells it: a search the page's job ran and the user cancelled reads as
    cancelled (core.search writes that itself when it can; a worker killed before it saved leaves 'running' or
    'interrupted'); one that says 'running' while no job of this page runs it has stopped, or runs elsewhere."""
    status = str(record.get("status"))
    ours = job is not None and search_runs.linked(job.folder) == folder
    if ours and job.state == "cancelled" and status in ("interrupted", "running"):  # type: ignore[union-attr]
        return "cancelled"
    if status == "running":
        return "interrupted" if ours else "elsewhere"
    return status


def _say_status(record: dict[str, Any], status: str) -> None:
    trials = record["trials"]
    done = sum(t.get("status") == "done" for t in trials)
    what = f"Search {md(record.get('id'))} on the {md(record.get('executor'))} executor: {done} of {len(trials)} " \
           f"trials done"
    if status == "done":
        st.success(f"{what}.")
    elif status == "cancelled":
        st.info(f"{what}; it was cancelled: the finished trials are kept (recorded in the store), the others were "
                "stopped or never started.")
    elif status == "elsewhere":
        st.warning(f"{what}; its record says it is running, but no search job of this page runs it: it runs "
                   "elsewhere (e.g. the CLI), or its process stopped without finishing.")
    else:
        st.warning(f"{what}; it stopped before it ended ({md(status)}): the finished trials are kept.")


def _draw(record: dict[str, Any], status: str) -> None:
    st.caption(md(search_trials.summary(record)))
    st.dataframe(search_trials.table(record, status), key=state.SEARCH_TRIALS, hide_index=True,
                 column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"),
                                "FLOPs": st.column_config.NumberColumn(format="compact"),
                                "size (bytes)": st.column_config.NumberColumn(format="compact")})
    figure = search_trials.chart(record)
    if figure is None:
        st.caption("The Pareto chart appears once a trial is done.")
    else:
        st.plotly_chart(figure, key=state.SEARCH_CHART, width="stretch")

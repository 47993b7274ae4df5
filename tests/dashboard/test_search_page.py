"""The Search page (issue 15 point 3), driven through AppTest on digits-mlp with no fine-tuning and a tiny grid
(2 FLOP targets x 1 strategy x 1 seed) on the local executor: Start runs the search as a background job in a
worker process (never in the Streamlit process); the trials table and the Pareto chart show the trials as the
search's search.json records them, every row equal to its store record; a new session (a refresh) shows the
same search; Cancel stops the worker mid-search and the finished trial stays recorded while the search reads as
cancelled; bad input is one line and nothing typed is lost."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.allocate import STRATEGIES
from core.executors_ray import ray_missing
from core.processes import alive, process_start
from core.store import Store
from dashboard import state
from dashboard.components.search_trials import CHART_TITLE
from tests.dashboard.nav import goto
from tests.dashboard.test_app import chart_specs, open_app, wait_for_job
from tests.dashboard.test_own_model import FACTORY, choose_own, load

MODEL = "digits-mlp"
TARGETS = "1.5, 3"


def _fill(at: AppTest, targets: str = TARGETS, executor: str = "local") -> AppTest:
    at.text_input(key=state.SEARCH_TARGETS).set_value(targets)
    at.multiselect(key=state.SEARCH_STRATEGIES).set_value(["uniform"])
    at.number_input(key=state.SEARCH_SEEDS).set_value(1)
    at.number_input(key=state.SEARCH_EPOCHS).set_value(0)
    at.radio(key=state.SEARCH_EXECUTOR).set_value(executor)
    return at.run()


def _start(monkeypatch: pytest.MonkeyPatch, home: Path, executor: str = "local", targets: str = TARGETS) -> AppTest:
    at = _fill(open_app(monkeypatch, MODEL, home, "search"), targets, executor)
    at.button(key=state.SEARCH_START).click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return at


def _worker(home: Path) -> dict:
    return json.loads(next((home / "jobs" / "search").glob("*/*/pid.json")).read_text())


def _record(home: Path) -> dict:
    """The search's search.json (the only search in this workspace)."""
    return json.loads(next((home / "runs").glob("*/search.json")).read_text())


def _wait_for_done_trials(home: Path, count: int, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not any(p.exists() for p in (home / "runs").glob("*/search.json")) or \
            sum(t["status"] == "done" for t in _record(home)["trials"]) < count:
        assert time.monotonic() < deadline, "no trial finished"
        time.sleep(0.5)


def _table(at: AppTest):
    return at.dataframe[0].value if at.dataframe else None  # the page's one table


def _rows(at: AppTest) -> list[dict]:
    table = _table(at)
    assert table is not None, "no trials table"
    return table.to_dict("records")


def _chart_points(at: AppTest) -> set[tuple[float, float]]:
    """(FLOPs, accuracy %) of every trial marker in the search's chart."""
    spec = next(s for s in chart_specs(at) if s["layout"].get("title", {}).get("text") == CHART_TITLE)
    return {(x, y) for trace in spec["data"] if trace["mode"] == "markers"
            for x, y in zip(_numbers(trace["x"]), _numbers(trace["y"]), strict=True)}


def _numbers(values) -> list[float]:
    """A plotly array as numbers (plotly 7 may store them base64-encoded)."""
    if isinstance(values, dict):
        import base64

        import numpy as np
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _assert_rows_are_the_stores(rows: list[dict], search_id: str, done: int) -> None:
    """Every done row equals its store record (status, accuracy, FLOPs, size), whose parent is the search."""
    records = {e.id: e for e in Store().list() if e.parent == search_id}
    done_rows = [r for r in rows if r["status"] == "done"]
    assert len(done_rows) == done
    for row in done_rows:
        e = records[row["record"]]
        assert (row["status"], row["accuracy"], row["FLOPs"], row["size (bytes)"]) == \
            (e.status, e.accuracy, e.flops, e.size_bytes)


@pytest.mark.slow
def test_search_runs_in_a_worker_shows_its_trials_as_stored_and_survives_a_refresh(monkeypatch, tmp_path):
    at = _start(monkeypatch, tmp_path)
    worker = _worker(tmp_path)
    assert worker["pid"] != os.getpid()  # the search runs in a worker process, not in the Streamlit process
    _wait_for_done_trials(tmp_path, 1)
    at.run()  # as the polling fragment would: the finished trial is in the table and on the chart
    rows = _rows(at)
    assert [r["target"] for r in rows] == [1.5, 3.0] and {r["strategy"] for r in rows} == {"uniform"}
    assert rows[0]["status"] == "done"
    assert len(_chart_points(at)) >= 1

    wait_for_job(at, "search")
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    record = _record(tmp_path)
    assert record["status"] == "done"
    rows = _rows(at)
    _assert_rows_are_the_stores(rows, record["id"], 2)
    assert _chart_points(at) == {(t["flops"], 100 * t["accuracy"]) for t in record["trials"]}

    fresh = open_app(monkeypatch, MODEL, tmp_path, "search")  # a refresh: a new session
    assert _table(fresh).equals(_table(at))
    assert _chart_points(fresh) == _chart_points(at)


@pytest.mark.slow
def test_cancel_mid_search_stops_the_worker_and_keeps_the_finished_trial(monkeypatch, tmp_path):
    at = _start(monkeypatch, tmp_path)
    worker = _worker(tmp_path)
    _wait_for_done_trials(tmp_path, 1)
    at.run()
    at.button(key=state.cancel_key("search")).click().run()
    wait_for_job(at, "search")
    deadline = time.monotonic() + 30  # SIGTERM, then SIGKILL after core.jobs.KILL_AFTER_S
    while alive(worker["pid"], worker["started"]):
        assert time.monotonic() < deadline, "the worker outlived its cancel"
        time.sleep(0.2)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    record = _record(tmp_path)
    assert record["status"] != "running" and record["trials"][0]["status"] == "done"
    rows = _rows(at)
    _assert_rows_are_the_stores(rows, record["id"], 1)
    assert rows[1]["status"] != "done"
    assert any("cancelled" in m.value for m in (*at.info, *at.warning))
    fresh = open_app(monkeypatch, MODEL, tmp_path, "search")  # after a refresh it still reads as cancelled
    assert _table(fresh).equals(_table(at))
    assert any("cancelled" in m.value for m in (*fresh.info, *fresh.warning))


def _descendants(root: int) -> dict[int, str | None]:
    """root and every process it started, and theirs (pid -> start time, to tell a reused pid apart)."""
    parents = {}
    for p in Path("/proc").iterdir():
        try:
            parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, grown = {root}, True
    while grown:
        grown = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grown = True
    return {pid: process_start(pid) for pid in found}


@pytest.mark.slow
@pytest.mark.skipif(bool(ray_missing()), reason="the Ray extra is not installed")
def test_cancel_on_ray_stops_every_process_of_the_search(monkeypatch, tmp_path):
    """The job's worker starts a local Ray cluster (its GCS, raylet, workers): after Cancel none of them runs."""
    at = _start(monkeypatch, tmp_path, "ray", "1.5, 2, 3, 4")  # 2 workers: trials are left to cancel
    worker = _worker(tmp_path)
    _wait_for_done_trials(tmp_path, 1, 600)
    started = _descendants(worker["pid"])
    assert len(started) > 2, started  # the cluster's processes are the worker's children
    at.run()
    at.button(key=state.cancel_key("search")).click().run()
    wait_for_job(at, "search")
    deadline = time.monotonic() + 30  # SIGTERM to the job's process group, SIGKILL after core.jobs.KILL_AFTER_S
    while left := [pid for pid, when in started.items() if alive(pid, when)]:
        assert time.monotonic() < deadline, f"processes of the cancelled search still run: {left}"
        time.sleep(0.5)
    at.run()
    record = _record(tmp_path)
    done = sum(t["status"] == "done" for t in record["trials"])  # Ray's trials finish in any order
    assert 1 <= done < len(record["trials"])
    _assert_rows_are_the_stores(_rows(at), record["id"], done)
    assert any("cancelled" in m.value for m in (*at.info, *at.warning))


@pytest.mark.parametrize("targets, says", [("2, x", "'x'"), ("0.5", "0.5"), ("", "target")])
def test_bad_input_is_one_line_and_starts_nothing(monkeypatch, tmp_path, targets, says):
    at = _fill(open_app(monkeypatch, MODEL, tmp_path, "search"), targets)
    at.button(key=state.SEARCH_START).click().run()
    assert not at.exception
    assert len(at.error) == 1 and says in at.error[0].value and "\n" not in at.error[0].value
    assert at.text_input(key=state.SEARCH_TARGETS).value == targets  # nothing typed is lost
    assert at.multiselect(key=state.SEARCH_STRATEGIES).value == ["uniform"]
    assert at.multiselect(key=state.SEARCH_STRATEGIES).options == list(STRATEGIES)  # the solver's own
    assert not (tmp_path / "jobs" / "search").exists()


def test_ray_without_the_extra_says_how_to_install_it(monkeypatch, tmp_path):
    line = "the Ray executor needs the optional extra; install it with: pip install -e '.[ray]'"
    monkeypatch.setattr("core.executors.ray_missing", lambda: line)
    monkeypatch.setattr("core.executors_ray.ray_missing", lambda: line)
    at = _fill(open_app(monkeypatch, MODEL, tmp_path, "search"), executor="ray")
    assert at.text_input(key=state.SEARCH_ADDRESS)  # where the cluster is (empty: a local one)
    assert any("pip install" in c.value for c in at.caption)
    at.button(key=state.SEARCH_START).click().run()
    assert len(at.error) == 1 and "pip install -e" in at.error[0].value
    assert not (tmp_path / "jobs" / "search").exists()



@pytest.mark.slow
def test_a_search_of_the_users_own_model_runs_in_a_worker(monkeypatch, tmp_path, tmp_path_factory):
    """A model loaded from the user's own file (the sidebar's "your own model") is searched as a registry model is:
    the job loads it by the arguments the user gave, and its trials are recorded with the search as parent."""
    folder = tmp_path_factory.mktemp("user-models")
    (folder / "digits_cnn.py").write_text(textwrap.dedent(FACTORY))
    at = load(choose_own(open_app(monkeypatch, MODEL, tmp_path)), f"{folder / 'digits_cnn.py'}:build")
    handle = at.sidebar.selectbox(key="model").value
    assert handle.startswith("user-")
    at = _fill(goto(at, "search"), "2")
    at.button(key=state.SEARCH_START).click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    _wait_for_done_trials(tmp_path, 1)
    record = _record(tmp_path)
    assert record["spec"]["model"] == handle and [t["status"] for t in record["trials"]] == ["done"]
    _assert_rows_are_the_stores(_rows(goto(at, "search")), record["id"], 1)

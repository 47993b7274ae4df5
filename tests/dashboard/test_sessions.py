"""Two sessions of one dashboard process at once (two AppTest objects sharing st.cache_*, like two browser
tabs): each prunes in the background at the same time, each sees its own run, and neither the shared cached
model nor the cached baseline is changed by either."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import torch

from core import job_tasks, models
from core import jobs as core_jobs
from core.config import FinetuneConfig, PruneConfig
from core.processes import process_start
from core.store import Store
from dashboard import cache
from dashboard.components.format import human
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app, run_job, wait_for_job

MODEL = "digits-mlp"
SELECTED = ("selected_run", "announced", "results-run", "export-run")  # session keys naming the shown run


def _start(at, method: str, ratio: float) -> None:
    """Set every slider of `method` to ratio, no fine-tuning, and press Apply (the run goes to the background)."""
    at.radio(key="method").set_value(method).run()
    at.slider(key=f"ratio-all|{MODEL}|{method}").set_value(ratio).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    assert run_job(at, MODEL) is not None, "the run did not start"


def _results_show(at, run_id: str, method: str, params: int) -> None:
    """The Results page shows run_id: selected, its method in the caption, its parameter count."""
    goto(at, "results")
    assert at.selectbox(key="results-run").value == run_id
    assert at.session_state["selected_run"] == run_id
    assert any(f"Method: {method}," in c.value for c in at.caption)
    assert [m for m in at.metric if m.label == "Parameters"][-1].value == human(params)


def test_two_sessions_prune_at_once_without_mixing_runs_or_touching_shared_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    cache.load_spec.clear(MODEL, None)  # so the loads below count every load of the model in this process
    loads = []
    real_load = models.load
    monkeypatch.setattr(models, "load", lambda *a, **kw: loads.append(a) or real_load(*a, **kw))
    shared = cache.spec(MODEL)
    weights = {k: v.clone() for k, v in shared.model.state_dict().items()}
    base = cache.baseline(MODEL)

    a, b = open_app(monkeypatch, MODEL, tmp_path, "tune"), open_app(monkeypatch, MODEL, tmp_path, "tune")
    _start(a, "channel", 0.5)
    _start(b, "unstructured", 0.8)  # while a's run is going
    assert run_job(a, MODEL).job_id != run_job(b, MODEL).job_id  # two configs: two jobs side by side
    wait_for_job(a)
    wait_for_job(b)
    a.run()
    for at in (a, b):
        assert not at.exception and not at.error, [e.value for e in at.exception]
    run_a, run_b = run_job(a, MODEL).result, run_job(b, MODEL).result
    assert run_a != run_b

    saved = {r.id: r for r in Store().list(model=MODEL, status="done")}  # the one listing of runs
    assert (saved[run_a].config.method, saved[run_b].config.method) == ("channel", "unstructured")
    assert saved[run_a].config.ratios == {"fc1": 0.5, "fc2": 0.5}
    assert saved[run_b].config.ratios == {"fc1": 0.8, "fc2": 0.8, "fc3": 0.8}
    _results_show(a, run_a, "channel", saved[run_a].metrics["pruned"]["params"])
    _results_show(b, run_b, "unstructured", saved[run_b].metrics["pruned"]["params"])
    assert saved[run_a].metrics["pruned"]["params"] < saved[run_b].metrics["pruned"]["params"]  # masks keep size
    for at, other in ((a, run_b), (b, run_a)):  # the other session's run is listed, never selected
        assert other not in [at.session_state.get(k) for k in SELECTED]

    assert len(loads) == 1, "each session loaded its own model instead of sharing the cached one"
    assert cache.spec(MODEL) is shared
    after = shared.model.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], v) for k, v in weights.items())
    again = cache.baseline(MODEL)
    assert again.metrics == base.metrics and again.onnx == base.onnx


def test_results_follow_a_run_whose_folder_appeared_before_it_was_announced(monkeypatch, tmp_path):
    """A full rerun while a run's files are written but its job not yet reported (in the app: a worker between
    writing the run and writing its outcome) lists the new run before Tune announces it; the announcement must
    still select it on Results. The second job is held there: its run is made here, its slot names a process
    that is still alive, and its outcome is written only after the check."""
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _start(at, "channel", 0.25)
    first = run_job(wait_for_job(at), MODEL).result
    held = subprocess.Popen(["sleep", "300"])
    try:
        folder = _held_job(held.pid)
        at.session_state[f"run-key|{MODEL}"] = folder.name
        spec, base = cache.spec(MODEL), cache.baseline(MODEL)
        config = PruneConfig(model=MODEL, method="channel", ratios={"fc1": 0.5}, model_fingerprint=spec.fingerprint,
                             finetune=FinetuneConfig(epochs=0))
        second = job_tasks.run_and_record(spec, lambda *_: None, config, None, base, None)
        assert len(Store().list(model=MODEL, status="done")) == 2  # the second run is recorded; its job has not ended
        goto(at, "results")  # a full rerun
        assert at.selectbox(key="results-run").value == first  # listed, not yet announced: the shown run stays
        (folder / "outcome.json").write_text(json.dumps({"result": second, "error": None}))
    finally:
        held.kill()
        held.wait()
    wait_for_job(goto(at, "tune"))  # Tune announces the runs it started
    assert at.session_state["announced"] == second
    assert goto(at, "results").selectbox(key="results-run").value == second


def _held_job(pid: int) -> Path:
    """A run job slot whose worker is `pid` (alive, silent): what the page sees while a worker finishes."""
    folder = core_jobs.slot("run", MODEL, "held")
    folder.mkdir(parents=True)
    (folder / "pid.json").write_text(json.dumps({"pid": pid, "started": process_start(pid)}))
    (folder / "progress.json").write_text(json.dumps({"stage": "measuring", "done": 0, "total": 1}))
    (folder / "request.json").write_text(json.dumps({"job_id": "held", "task": "run", "model": MODEL,
                                                     "created": time.time()}))
    return folder


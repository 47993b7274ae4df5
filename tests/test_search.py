"""prunelab search (core.search): the grid of solve -> apply trials on an executor, each recorded in the store with
the search as parent, the Pareto fronts of the finished trials, failures and cancellation kept in the record."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from core.allocate import Target
from core.cli import main
from core.config import PruneConfig
from core.errors import PruneLabError
from core.executors import LocalExecutor
from core.search import DRIVER, PARETO_FILE, SEARCH_FILE, SearchSpec, run_search
from core.store import Store
from core.workflows import SolveRequest, solve
from tests.conftest import get_spec

MODEL = "digits-mlp"
AXES = ("flops", "size_bytes", "latency_ms")


def _solved(target: float, strategy: str, seed: int, epochs: int) -> PruneConfig:
    """What the budget solver gives for one trial, with the search's fine-tuning epochs."""
    spec = get_spec(MODEL)
    config = solve(spec, SolveRequest(Target("flops", target), strategy, seed=seed)).config(spec)
    return dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, epochs=epochs))


def _children(search_id: str) -> dict:
    """The store's records whose parent is the search, by id."""
    return {e.id: e for e in Store().list() if e.parent == search_id}


def _brute_front(points: list[dict], x: str) -> set[str]:
    """Trials no other trial dominates (x no higher and accuracy no lower, one of them strictly)."""
    def dominates(a: dict, b: dict) -> bool:
        return a[x] <= b[x] and a["accuracy"] >= b["accuracy"] and (a[x] < b[x] or a["accuracy"] > b["accuracy"])
    return {p["key"] for p in points if not any(dominates(q, p) for q in points if q is not p)}


@pytest.fixture(scope="module")
def searched():
    """2 targets x 2 strategies x 1 seed on digits-mlp, one epoch of fine-tuning (so the accuracies the Ray test
    compares are a fine-tune's, the part that could depend on where it ran), on the local executor."""
    spec = SearchSpec(MODEL, targets=(1.5, 3.0), strategies=("uniform", "global"), seeds=(0,), finetune_epochs=1)
    seen: list[tuple[str, int, int]] = []
    report = run_search(spec, LocalExecutor(), model=get_spec(MODEL),
                        on_trial=lambda trial, done, total: seen.append((trial["key"], done, total)))
    return spec, report, seen


@pytest.mark.slow
def test_every_trial_recorded_with_the_search_as_parent(searched) -> None:
    spec, report, seen = searched
    assert report.status == "done"
    assert [t["status"] for t in report.trials] == ["done"] * 4
    children = _children(report.id)
    assert sorted(children) == sorted(t["id"] for t in report.trials)
    assert all(e.status == "done" for e in children.values())
    assert [s[1:] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # each trial reported as it finished
    for t in report.trials:
        assert Path(children[t["id"]].folder).parent == report.folder  # the trial folders lie in the search's


@pytest.mark.slow
def test_configs_are_the_solvers_and_accuracies_the_run_folders(searched) -> None:
    spec, report, _ = searched
    assert {(t["target"], t["strategy"], t["seed"]) for t in report.trials} == \
        {(1.5, "uniform", 0), (1.5, "global", 0), (3.0, "uniform", 0), (3.0, "global", 0)}
    children = _children(report.id)
    for t in report.trials:
        expected = _solved(t["target"], t["strategy"], t["seed"], spec.finetune_epochs)
        assert PruneConfig.from_dict(t["config"]) == expected
        assert children[t["id"]].config == expected
        metrics = json.loads((Path(t["folder"]) / "metrics.json").read_text())
        assert t["accuracy"] == metrics["pruned"]["accuracy"] == children[t["id"]].accuracy
        assert t["flops"] == metrics["pruned"]["flops"]
        assert t["where"]  # where the run (and its accuracy) was measured
        assert t["latency_where"] == DRIVER and t["latency_ms"] > 0  # re-measured here, interleaved


@pytest.mark.slow
def test_pareto_fronts_are_the_non_dominated_trials(searched) -> None:
    _, report, _ = searched
    done = [t for t in report.trials if t["status"] == "done"]
    for axis in AXES:
        assert set(report.pareto[axis]) == _brute_front(done, axis), axis
    with open(report.folder / PARETO_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["axis"], r["key"]) for r in rows} == {(a, k) for a in AXES for k in report.pareto[a]}


@pytest.mark.slow
def test_search_json_holds_the_spec_and_every_trial(searched) -> None:
    spec, report, _ = searched
    saved = json.loads((report.folder / SEARCH_FILE).read_text())
    assert SearchSpec.from_dict(saved["spec"]) == spec
    assert saved["status"] == "done" and saved["id"] == report.id
    assert saved["trials"] == report.trials


@pytest.mark.slow
def test_a_trial_that_cannot_be_met_is_recorded_failed_and_the_others_complete() -> None:
    spec = SearchSpec(MODEL, targets=(2.0, 1000.0), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    report = run_search(spec, LocalExecutor(), model=get_spec(MODEL))
    ok, impossible = report.trials
    assert ok["status"] == "done" and ok["accuracy"] is not None
    assert impossible["status"] == "failed" and "cannot be met" in impossible["message"]
    children = _children(report.id)
    assert children[ok["id"]].status == "done"
    assert children[impossible["id"]].status == "failed"
    assert children[impossible["id"]].error == impossible["message"]
    assert report.pareto["flops"] == [ok["key"]]  # a failed trial is on no front


class _FirstTrialFails(LocalExecutor):
    """The local executor, but the first trial fails for its own reasons where it runs (as a worker's would)."""

    def run(self, fn, items, *, on_done=None, cancelled=None):
        first = items[0][1]

        def trial(argument):
            if argument is first:
                raise PruneLabError("a configuration the model cannot take")
            return fn(argument)
        return super().run(trial, items, on_done=on_done, cancelled=cancelled)


@pytest.mark.slow
def test_a_trial_failing_where_it_runs_is_recorded_failed_by_the_driver() -> None:
    spec = SearchSpec(MODEL, targets=(2.0, 3.0), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    report = run_search(spec, _FirstTrialFails(), model=get_spec(MODEL))
    failed, ok = report.trials
    assert (failed["status"], failed["message"]) == ("failed", "a configuration the model cannot take")
    assert ok["status"] == "done" and report.status == "done"
    children = _children(report.id)
    assert (children[failed["id"]].status, children[failed["id"]].error) == ("failed", failed["message"])
    assert children[failed["id"]].config == PruneConfig.from_dict(failed["config"])
    assert children[ok["id"]].status == "done"


@pytest.mark.slow
def test_cancel_after_the_first_trial_keeps_it_and_marks_the_rest_cancelled() -> None:
    spec = SearchSpec(MODEL, targets=(1.5, 2.0, 3.0), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    finished: list[str] = []
    report = run_search(spec, LocalExecutor(), model=get_spec(MODEL),
                        on_trial=lambda trial, done, total: finished.append(trial["key"]),
                        cancelled=lambda: len(finished) >= 1)
    assert report.status == "cancelled"
    assert [t["status"] for t in report.trials] == ["done", "cancelled", "cancelled"]
    assert list(_children(report.id)) == [report.trials[0]["id"]]
    saved = json.loads((report.folder / SEARCH_FILE).read_text())
    assert saved["status"] == "cancelled" and [t["status"] for t in saved["trials"]] == ["done", "cancelled",
                                                                                          "cancelled"]


def test_spec_round_trips_through_json() -> None:
    spec = SearchSpec(MODEL, targets=(1.5, 2.0, 3.0, 4.0), strategies=("uniform", "global", "sensitivity"),
                      seeds=(0, 1, 2), finetune_epochs=1, hardware_aware=True)
    assert SearchSpec.from_json(spec.to_json()) == spec
    assert [(t.target, t.strategy, t.seed) for t in spec.trials()][:4] == \
        [(1.5, "uniform", 0), (1.5, "uniform", 1), (1.5, "uniform", 2), (1.5, "global", 0)]
    assert len(spec.trials()) == 4 * 3 * 3


@pytest.mark.parametrize(("changes", "message"), [
    ({"targets": ()}, "at least one target"),
    ({"targets": (0.5,)}, "at least 1"),
    ({"targets": (2.0, 2.0)}, "twice"),
    ({"strategies": ("random",)}, "unknown strategy 'random'"),
    ({"strategies": ()}, "at least one strategy"),
    ({"seeds": ()}, "at least one seed"),
    ({"seeds": (-1,)}, "seed must be an integer"),
    ({"finetune_epochs": -1}, "epochs must be an integer"),
    ({"method": "unstructured", "hardware_aware": True}, "hardware-aware"),
    ({"method": "nope"}, "nope"),
    ({"target": "speed"}, "unknown target"),
])
def test_bad_specs_are_refused_in_one_line(changes: dict, message: str) -> None:
    base = dict(model=MODEL, targets=(2.0,), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    with pytest.raises(PruneLabError, match=message) as caught:
        SearchSpec(**{**base, **changes})
    assert "\n" not in str(caught.value)


def test_a_spec_file_of_another_kind_is_refused() -> None:
    with pytest.raises(PruneLabError, match="search"):
        SearchSpec.from_json(json.dumps({"model": MODEL, "version": 99}))


@pytest.mark.parametrize(("argv", "message"), [
    (["--targets", "0.5"], "at least 1"),
    (["--targets", "two"], "--targets"),
    (["--strategies", "uniform,random"], "unknown strategy 'random'"),
    (["--seeds", "0"], "--seeds"),
    (["--executor", "spark"], "--executor"),
    (["--finetune-epochs", "-2"], "epochs"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys) -> None:
    assert main(["search", MODEL, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunelab: error:") and message in err and "\n" not in err


@pytest.mark.slow
def test_cli_search_prints_progress_and_the_pareto_table(capsys) -> None:
    code = main(["search", MODEL, "--targets", "2,3,1000", "--strategies", "uniform", "--seeds", "1",
                 "--finetune-epochs", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("trial ")]
    assert lines[0].startswith("trial 1/3 flops1000-uniform-seed0: failed: target flops 1000 cannot be met")
    assert lines[1].startswith("trial 2/3 flops2-uniform-seed0: accuracy ") and lines[1].endswith(" left)")
    assert lines[2].startswith("trial 3/3 flops3-uniform-seed0: accuracy ")
    assert "Pareto" in out and "flops2-uniform-seed0" in out
    assert SEARCH_FILE in out


@pytest.mark.slow
def test_a_killed_search_keeps_its_finished_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `prunelab search` process killed by SIGKILL after its first trial: that trial stays done in the
    store (parent: the search) and in search.json, which then reads as interrupted; the trial it was running is
    interrupted in the store."""
    import os
    import signal
    import subprocess
    import sys

    from core.search import read_search

    home = tmp_path / "home"
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "search", MODEL, "--targets", "1.5,2,3",
                             "--strategies", "uniform", "--finetune-epochs", "0"], env=env,
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = b""
    while not line.startswith(b"trial 1/3"):  # the first trial's line: it has landed (and been saved)
        raw = proc.stderr.readline()
        assert raw, "the search ended before its first trial landed"
        line = raw.split(b"\r")[-1]  # after the progress bars' carriage returns
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    (folder,) = (home / "runs").glob("*-search")
    saved = read_search(folder)
    assert saved["status"] == "interrupted"
    assert [t["status"] for t in saved["trials"]][0] == "done"
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    rows = {e.id: e for e in Store().list() if e.parent == saved["id"]}  # opening the store reaps dead runs
    assert rows[saved["trials"][0]["id"]].status == "done"
    assert {e.status for e in rows.values()} <= {"done", "interrupted"}


@pytest.mark.slow
def test_the_search_on_ray_gives_the_local_configs_and_accuracies(searched, ray_cluster) -> None:
    """The same 2 x 2 x 1 search on a local Ray cluster of 2 workers: the same configs and accuracies as on the
    local executor, measured on the workers, every trial recorded by the driver with the search as parent."""
    import os

    spec, local, _ = searched
    remote = run_search(spec, ray_cluster, model=get_spec(MODEL))
    assert remote.status == "done" and remote.executor == "ray"
    by_key = {t["key"]: t for t in local.trials}
    assert [t["key"] for t in remote.trials] == list(by_key)
    for t in remote.trials:
        assert t["status"] == "done"
        assert t["config"] == by_key[t["key"]]["config"]
        assert t["accuracy"] == by_key[t["key"]]["accuracy"]
        assert t["flops"] == by_key[t["key"]]["flops"] and t["size_bytes"] == by_key[t["key"]]["size_bytes"]
        assert not t["where"].endswith(f" pid {os.getpid()}")  # measured on a worker, not here
    children = _children(remote.id)
    assert sorted(children) == sorted(t["id"] for t in remote.trials)
    assert all(e.status == "done" for e in children.values())
    # recorded by the driver, in its own store and folders (a worker of a joined cluster has neither)
    assert {e.pid for e in children.values()} == {os.getpid()}
    assert all((Path(t["folder"]) / "metrics.json").is_file() for t in remote.trials)


def test_a_search_stopped_by_its_cancel_reads_cancelled_not_interrupted(tmp_path) -> None:
    """Cancel from the page marks the job, then stops its process (SIGTERM: SystemExit in the search): the search
    record says cancelled, as a cancel between trials does; only a stop nobody asked for reads interrupted."""
    asked = []

    def stop_after_first(entry: dict, done: int, total: int) -> None:
        asked.append(True)  # the cancel mark, then the signal
        raise SystemExit(143)

    spec = SearchSpec(MODEL, targets=(1.5, 2.0), strategies=("uniform",), seeds=(0,), finetune_epochs=0)
    started = []
    with pytest.raises(SystemExit):
        run_search(spec, LocalExecutor(), model=get_spec(MODEL), on_trial=stop_after_first,
                   cancelled=lambda: bool(asked), on_start=started.append)
    saved = json.loads((started[0].folder / "search.json").read_text())
    assert saved["status"] == "cancelled"
    assert [t["status"] for t in saved["trials"]][0] == "done"

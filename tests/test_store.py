"""The experiment store (core.store): records survive restarts, kills and concurrent writers; delete and export
stay inside the workspace; Pareto fronts match a brute-force search; `prunelab experiments` has one-line errors."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import runs
from core.cli import main
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.errors import PruneLabError
from core.files import write_atomic
from core.run_folder import IDENTITY, read_identity
from core.store import PARETO_AXES, SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = PruneConfig("digits-mlp", "channel", {"fc1": 0.5})


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private, empty workspace."""
    path = tmp_path / "home"
    monkeypatch.setenv("PRUNELAB_HOME", str(path))
    monkeypatch.delenv("PRUNELAB_DEBUG", raising=False)
    return path


def _metrics(params: int = 1000, flops: int = 2000, accuracy: float | None = 0.9, size_bytes: int | None = None,
             latency_ms: float = 0.01) -> dict:
    pruned = {"params": params, "flops": flops, "size_bytes": size_bytes or 4 * params, "latency_ms": latency_ms,
              "accuracy": accuracy, "nonzero_params": params, "latency_batches": [1]}
    return {"baseline": dict(pruned, params=2 * params), "pruned": pruned}


def _saved(store: Store, name: str, config: PruneConfig = CHANNEL, metrics: dict | None = None) -> str:
    """A finished run with real files in <workspace>/runs/name, recorded like the CLI does."""
    folder = runs.workspace() / "runs" / name
    exp_id = store.start(folder, config)
    metrics = metrics or _metrics()
    config.save(folder / "config.json")
    write_atomic(folder / "model.onnx", f"onnx of {name}".encode())
    write_atomic(folder / "metrics.json", json.dumps(metrics).encode())
    store.finish(exp_id, metrics)
    return exp_id


def _sql(home: Path, statement: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(home / "experiments.db")
    with conn:
        conn.execute(statement, params)
    conn.close()


# --- round trip ------------------------------------------------------------------------------------------------


def test_start_finish_get_list(home):
    store = Store()
    assert store.path == home / "experiments.db"
    a = store.start(home / "runs" / "a", CHANNEL)
    running = store.get(a)
    assert (running.status, running.pid, running.host) == ("running", os.getpid(), socket.gethostname())
    assert running.metrics is None and running.accuracy is None and running.finished_at is None
    store.finish(a, _metrics(params=700, flops=1400, accuracy=0.93))
    done = store.get(a)
    assert done.status == "done" and done.config == CHANNEL and done.metrics == _metrics(700, 1400, 0.93)
    assert (done.params, done.flops, done.size_bytes, done.latency_ms, done.accuracy) == (700, 1400, 2800, 0.01, 0.93)
    assert done.folder == (home / "runs" / "a").resolve() and done.finished_at >= done.created_at

    unstructured = PruneConfig("digits-mlp", "unstructured", {"fc1": 0.9}, criterion="l2")
    b = store.start(home / "runs" / "b", unstructured)
    store.fail(b, "out of memory")
    c = store.start(home / "runs" / "c", PruneConfig("mnist-resnet", "channel", {}))
    assert [e.id for e in store.list()] == [c, b, a]  # newest first
    assert [e.id for e in store.list(model="digits-mlp")] == [b, a]
    assert [e.id for e in store.list(method="unstructured")] == [b]
    assert [e.id for e in store.list(status="running")] == [c]
    assert [e.id for e in store.list(model="digits-mlp", status="done")] == [a]
    failed = store.get(b)
    assert (failed.status, failed.error, failed.criterion) == ("failed", "out of memory", "l2")
    with pytest.raises(PruneLabError, match="unknown status"):
        store.list(status="sleeping")


def test_ids_come_from_folder_names_and_stay_unique(home, tmp_path):
    store = Store()
    first = store.start(tmp_path / "x" / "my run", CHANNEL)
    second = store.start(tmp_path / "y" / "my run", CHANNEL)
    assert (first, second) == ("my-run", "my-run-2")
    assert store.start(tmp_path / "../..", CHANNEL) not in ("", ".", "..")
    # a second run into the same folder replaces its files: the first row keeps its record, loses the folder
    again = store.start(tmp_path / "x" / "my run", CHANNEL)
    assert store.get(first).folder is None and store.get(again).folder == (tmp_path / "x" / "my run").resolve()


def test_unknown_ids_are_one_clear_error(home):
    store = Store()
    for call in (store.get, store.delete, lambda i: store.finish(i, {}), lambda i: store.fail(i, "x"),
                 lambda i: store.export(i, home / "out")):
        for bad in ("nope", "../nope", "'; DROP TABLE experiments; --"):
            with pytest.raises(PruneLabError, match="no experiment"):
                call(bad)


def test_diff_lists_every_unit_and_setting(home):
    store = Store()
    a = store.start(home / "runs" / "a", PruneConfig("digits-mlp", "channel", {"fc1": 0.5, "fc2": 0.25}))
    b = store.start(home / "runs" / "b", PruneConfig("digits-mlp", "channel", {"fc1": 0.5, "fc3": 0.1},
                                                     criterion="l2", finetune=FinetuneConfig(epochs=2),
                                                     schedule=Schedule("iterative", 3)))
    rows = {(r["kind"], r["name"]): r for r in store.diff(a, b)}
    assert rows["ratio", "fc1"] == {"kind": "ratio", "name": "fc1", "a": 0.5, "b": 0.5, "changed": False}
    assert (rows["ratio", "fc2"]["a"], rows["ratio", "fc2"]["b"], rows["ratio", "fc2"]["changed"]) == (0.25, 0.0, True)
    assert (rows["ratio", "fc3"]["a"], rows["ratio", "fc3"]["b"]) == (0.0, 0.1)
    changed = {name for (kind, name), r in rows.items() if kind == "setting" and r["changed"]}
    assert changed == {"criterion", "finetune.epochs", "schedule.kind"}
    assert not rows["setting", "method"]["changed"] and "version" not in {n for _, n in rows}
    c = store.start(home / "runs" / "c", PruneConfig("digits-mlp", "unstructured", {"fc1": 0.5}))
    assert {r["name"] for r in store.diff(a, c) if r["changed"]} == {"method", "fc2"}


def _dominated(p, points, x: str) -> bool:
    return any(getattr(q, x) <= getattr(p, x) and q.accuracy >= p.accuracy
               and (getattr(q, x) < getattr(p, x) or q.accuracy > p.accuracy) for q in points)


def test_pareto_matches_brute_force(home):
    rng, store = random.Random(1234), Store()
    for i in range(22):
        accuracy = None if rng.random() < 0.15 else rng.choice([0.8, 0.85, 0.9, 0.92, 0.95, 0.97])
        metrics = _metrics(params=rng.randrange(100, 1000), flops=rng.randrange(1000, 1200, 25), accuracy=accuracy,
                           latency_ms=rng.choice([0.01, 0.02, 0.03]))
        exp_id = store.start(home / "runs" / f"p{i}", CHANNEL)
        if i % 7:
            store.finish(exp_id, metrics)
        else:
            store.fail(exp_id, "not done")  # failed ones never count
    twin = store.list(status="done")[0]  # an identical point: neither dominates the other
    store.finish(store.start(home / "runs" / "twin", CHANNEL), twin.metrics)
    store.finish(store.start(home / "runs" / "other", PruneConfig("mnist-resnet", "channel", {})),
                 _metrics(params=1, flops=1, accuracy=1.0))  # another model's best point
    done = [e for e in store.list(model="digits-mlp", status="done") if e.accuracy is not None]
    assert len(done) >= 12
    for x in PARETO_AXES:
        front = store.pareto("digits-mlp", x)
        assert {e.id for e in front} == {p.id for p in done if not _dominated(p, done, x)}, x
        assert [getattr(e, x) for e in front] == sorted(getattr(e, x) for e in front)
        assert all(e.accuracy is not None and e.model == "digits-mlp" for e in front)
    with pytest.raises(PruneLabError, match="Pareto"):
        store.pareto("digits-mlp", "accuracy")


# --- files: export, delete, path safety ------------------------------------------------------------------------


def test_export_and_delete(home, tmp_path):
    store = Store()
    keep, gone = _saved(store, "keep"), _saved(store, "gone")
    paths = store.export(keep, tmp_path / "exported")
    assert [p.name for p in paths] == ["config.json", "model.onnx", "metrics.json"]
    for p in paths:
        assert p.read_bytes() == (home / "runs" / "keep" / p.name).read_bytes()
    assert store.delete(gone) == (home / "runs" / "gone").resolve()
    assert not (home / "runs" / "gone").exists() and [e.id for e in store.list()] == [keep]
    assert sorted(p.name for p in (home / "runs").iterdir()) == ["keep"]  # no hidden leftovers
    (home / "runs" / "keep" / "model.safetensors").write_bytes(b"weights")  # runs since issue 13 keep their weights
    paths = store.export(keep, tmp_path / "with-weights")
    assert [p.name for p in paths] == ["config.json", "model.onnx", "model.safetensors", "metrics.json"]
    assert (tmp_path / "with-weights" / "model.safetensors").read_bytes() == b"weights"
    (home / "runs" / "keep" / "model.int8.onnx").write_bytes(b"int8")  # a run quantised after its last stage
    paths = store.export(keep, tmp_path / "with-int8")
    assert [p.name for p in paths] == ["config.json", "model.onnx", "model.int8.onnx", "model.safetensors",
                                       "metrics.json"]
    assert (tmp_path / "with-int8" / "model.int8.onnx").read_bytes() == b"int8"
    running = store.start(home / "runs" / "busy", CHANNEL)
    with pytest.raises(PruneLabError, match="still running"):
        store.delete(running)
    with pytest.raises(PruneLabError, match="is running: nothing to export"):
        store.export(running, tmp_path / "e2")


def test_delete_and_export_refuse_paths_outside_the_runs_folder(home, tmp_path):
    store = Store()
    outside = tmp_path / "outside"
    exp_id = _saved(store, "victim")
    victim = home / "runs" / "victim"
    for name in ("config.json", "model.onnx", "metrics.json"):
        (outside / name).parent.mkdir(exist_ok=True)
        (outside / name).write_bytes((victim / name).read_bytes())
    (home / "runs" / "link").symlink_to(outside, target_is_directory=True)
    crafted = [str(outside), str(home / "runs" / ".." / ".." / "outside"), str(home / "runs" / "link"),
               str(home / "runs"), str(home), "/"]
    for folder in crafted:
        _sql(home, "UPDATE experiments SET folder = ? WHERE id = ?", (folder, exp_id))
        with pytest.raises(PruneLabError, match="outside"):
            store.delete(exp_id)
        with pytest.raises(PruneLabError, match="outside"):
            store.export(exp_id, tmp_path / "dest")
    assert sorted(p.name for p in outside.iterdir()) == ["config.json", "metrics.json", "model.onnx"]
    assert victim.is_dir() and (home / "runs").is_dir() and not (tmp_path / "dest").exists()
    # export never writes into the runs folder (or a run folder)
    _sql(home, "UPDATE experiments SET folder = ? WHERE id = ?", (str(victim.resolve()), exp_id))
    for dest in (home / "runs", victim, home / "runs" / "new", victim / ".." / "new2"):
        with pytest.raises(PruneLabError, match="inside the run folders"):
            store.export(exp_id, dest)
    assert not (home / "runs" / "new").exists()
    # keep_files forgets a row whose folder is elsewhere, and touches nothing
    _sql(home, "UPDATE experiments SET folder = ? WHERE id = ?", (str(outside), exp_id))
    assert store.delete(exp_id, keep_files=True) is None
    assert store.list() == [] and len(list(outside.iterdir())) == 3 and victim.is_dir()


# --- the database: schema, restarts, concurrency, processes ----------------------------------------------------


def test_database_settings_and_newer_schema_refused(home):
    store = Store()
    with store._connect() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    _sql(home, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(PruneLabError, match="newer PruneLab"):
        Store()
    (home / "junk.db").write_bytes(b"not a database" * 100)
    junk = Store(home / "junk.db")  # a file that is not a database is moved aside, not deleted or overwritten
    assert junk.recovered == home / junk.recovered.name and junk.recovered.name.startswith("junk.db.corrupt-")
    assert junk.recovered.read_bytes() == b"not a database" * 100 and junk.list() == []


def test_a_new_store_and_a_new_process_see_everything(home):
    first = Store()
    ids = [_saved(first, f"run{i}") for i in range(3)] + [first.start(home / "runs" / "going", CHANNEL)]
    first.fail(ids[1], "boom")
    again = Store()
    assert [e.id for e in again.list()] == ids[::-1]
    assert again.get(ids[1]).error == "boom" and again.get(ids[0]).metrics == _metrics()
    script = "import json; from core.store import Store; print(json.dumps([[e.id, e.status] for e in Store().list()]))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PRUNELAB_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    # this test's process is alive, so its running row stays running in the other process too
    assert json.loads(proc.stdout) == [[ids[3], "running"], [ids[2], "done"], [ids[1], "failed"], [ids[0], "done"]]


def test_two_stores_writing_alternately_and_at_once_lose_nothing(home):
    one, two = Store(), Store()
    for i in range(20):
        store = (one, two)[i % 2]
        store.finish(store.start(home / "runs" / f"alt{i}", CHANNEL), _metrics(params=i + 1))
    assert len(one.list()) == len(two.list()) == 20

    def writer(tag: str) -> None:
        store = Store()
        for i in range(15):
            store.finish(store.start(home / "runs" / f"{tag}{i}", CHANNEL), _metrics(params=i + 1))

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("t", "u")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Store().list(status="done")) == 50


def test_running_rows_of_dead_processes_become_interrupted(home):
    store = Store()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, reused, remote, mine = (store.start(home / "runs" / n, CHANNEL) for n in ("dead", "reused", "remote", "mine"))
    _sql(home, "UPDATE experiments SET pid = ?, proc_start = NULL WHERE id IN (?, ?)", (gone.pid, dead, remote))
    _sql(home, "UPDATE experiments SET proc_start = '1' WHERE id = ?", (reused,))  # our pid, another process
    _sql(home, "UPDATE experiments SET host = 'another-machine' WHERE id = ?", (remote,))
    reopened = Store()  # opening repairs
    assert {e.id: e.status for e in reopened.list()} == {dead: "interrupted", reused: "interrupted",
                                                         remote: "running", mine: "running"}
    assert "process ended" in reopened.get(dead).error


def test_sync_imports_folders_and_completes_late_metrics(home):
    store = Store()
    recorded = _saved(store, "recorded")
    complete, half = home / "runs" / "from-dashboard", home / "runs" / "half"
    for folder in (complete, half, home / "runs" / ".deleting-x", home / "runs" / "empty"):
        folder.mkdir(parents=True)
    for folder in (complete, half, home / "runs" / ".deleting-x"):
        CHANNEL.save(folder / "config.json")
    write_atomic(complete / "metrics.json", json.dumps(_metrics(params=321)).encode())
    (home / "runs" / "empty" / "config.json").write_text("{broken")
    report = store.sync()
    assert report == {"interrupted": [], "completed": [], "imported": ["from-dashboard", "half"]}
    assert store.get("from-dashboard").status == "done" and store.get("from-dashboard").params == 321
    assert store.get("half").status == "interrupted" and store.get(recorded).status == "done"
    assert store.sync() == {"interrupted": [], "completed": [], "imported": []}  # idempotent
    write_atomic(half / "metrics.json", json.dumps(_metrics()).encode())  # e.g. killed after writing its files
    assert store.sync()["completed"] == ["half"] and store.get("half").status == "done"
    # the store is the one listing: every complete folder is listed through it now
    assert {e.id for e in store.list(status="done")} == {"recorded", "from-dashboard", "half"}
    assert {e.id for e in store.list(model="digits-mlp", status="done")} == {"recorded", "from-dashboard", "half"}
    assert store.id_for_folder(complete) == "from-dashboard" and store.id_for_folder(home) is None


def _write_metrics(folder: Path, metrics: dict) -> dict:
    """metrics.json as RunOutput.write writes it into a claimed folder: naming the run that owns the folder."""
    metrics = dict(metrics, run=read_identity(folder).stamp())
    write_atomic(folder / "metrics.json", json.dumps(metrics).encode())
    return metrics


def test_record_helper(home):
    folder = home / "runs" / "r"
    with runs.record(folder, CHANNEL) as finish:
        assert Store().get("r").status == "running"
        finish(_write_metrics(folder, _metrics(params=5)))
    assert Store().get("r").params == 5
    with pytest.raises(ValueError), runs.record(home / "runs" / "bad", CHANNEL):
        raise ValueError("broken")
    assert (Store().get("bad").status, Store().get("bad").error) == ("failed", "ValueError: broken")
    with pytest.raises(KeyboardInterrupt), runs.record(home / "runs" / "stopped", CHANNEL):
        raise KeyboardInterrupt
    assert Store().get("stopped").status == "interrupted"
    with runs.record(home / "runs" / "forgot", CHANNEL):
        pass
    assert Store().get("forgot").status == "failed"
    _sql(home, "UPDATE schema_version SET version = 99")  # the store cannot be used: the run still goes on
    warnings: list[str] = []
    with runs.record(home / "runs" / "unrecorded", CHANNEL, warn=warnings.append) as finish:
        finish(_write_metrics(home / "runs" / "unrecorded", _metrics()))
    assert len(warnings) == 1 and "newer PruneLab" in warnings[0]


def test_a_run_into_a_folder_holding_a_run_is_refused_or_moves_it_aside_with_its_record(home):
    store = Store()
    old = _saved(store, "old", metrics=_metrics(params=111))  # recorded before run uids: no identity file
    folder = home / "runs" / "old"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(PruneLabError, match=r"already holds run old \(done\).*--force"), runs.record(folder, CHANNEL):
        pytest.fail("the block must not run")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and len(Store().list()) == 1
    with runs.record(folder, CHANNEL, replace=True) as finish:
        aside = home / "runs" / "old.replaced-old"
        moved = Store().get(old)
        assert moved.folder == aside.resolve() and moved.status == "done" and moved.params == 111
        assert {n: (aside / n).read_bytes() for n in before} == before
        assert read_identity(aside).uid == Store().occupant(aside)["run_uid"]  # given a uid, written with it
        assert sorted(p.name for p in folder.iterdir()) == [IDENTITY, "config.json"]  # identity first, config
        finish(_write_metrics(folder, _metrics(params=222)))
    assert {e.id: (e.status, e.params) for e in Store().list()} == {"old": ("done", 111), "old-2": ("done", 222)}
    assert Store().sync() == {"interrupted": [], "completed": [], "imported": []}  # nothing to repair or import


def test_metrics_are_only_ever_taken_by_the_run_that_wrote_them(home):
    store = Store()
    folder = home / "runs" / "shared"
    with pytest.raises(KeyboardInterrupt), runs.record(folder, CHANNEL) as finish:  # killed before its metrics
        first = read_identity(folder)
        raise KeyboardInterrupt
    killed = Store().occupant(folder)["id"]
    # metrics.json of another run (another uid), of this run with another config, and without a uid, older
    other = PruneConfig("digits-mlp", "channel", {"fc1": 0.25})
    for stamp in ({"uid": "someone-else", "config_sha256": first.config_sha256},
                  {"uid": first.uid, "config_sha256": "another-config"}, None):
        metrics = _metrics(params=999) | ({"run": stamp} if stamp else {})
        write_atomic(folder / "metrics.json", json.dumps(metrics).encode())
        assert store.sync()["completed"] == [] and store.get(killed).status == "interrupted"
    write_atomic(folder / "metrics.json", json.dumps(_metrics(params=5) | {"run": first.stamp()}).encode())
    assert store.sync()["completed"] == [killed]  # its own, written just before it was killed
    done = store.get(killed)
    assert (done.status, done.params) == ("done", 5) and done.finished_at >= done.created_at
    # finish() refuses metrics.json that is not the run's own
    with pytest.raises(PruneLabError, match="not this run's own"), runs.record(home / "runs" / "b", other) as finish:
        write_atomic(home / "runs" / "b" / "metrics.json", json.dumps(_metrics() | {"run": first.stamp()}).encode())
        finish(_metrics() | {"run": first.stamp()})
    assert store.get("b").status == "failed" and store.get("b").metrics is None


def test_a_legacy_row_never_takes_metrics_older_than_itself(home):
    """A row recorded before run uids (schema 1) is completed only by a metrics.json newer than itself beside
    its own config: the finding's case (a killed run, an older run's metrics.json in its folder) stays
    interrupted."""
    store = Store()
    folder = home / "elsewhere" / "D"
    CHANNEL.save(folder / "config.json")
    write_atomic(folder / "metrics.json", json.dumps(_metrics(params=1)).encode())  # the older run's
    os.utime(folder / "metrics.json", (1_000_000_000, 1_000_000_000))  # written in 2001
    killed = store.start(folder, CHANNEL)
    _sql(home, "UPDATE experiments SET pid = 1, proc_start = '0', run_uid = NULL WHERE id = ?", (killed,))
    assert store.sync()["interrupted"] == [killed] and store.get(killed).status == "interrupted"
    write_atomic(folder / "metrics.json", json.dumps(_metrics(params=2)).encode())  # written after it started
    assert store.sync()["completed"] == [killed] and store.get(killed).params == 2


def test_an_old_store_is_migrated_and_keeps_its_rows(home):
    conn = sqlite3.connect(home.mkdir(parents=True) or home / "experiments.db")
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);
        CREATE TABLE experiments (id TEXT PRIMARY KEY, model TEXT NOT NULL, method TEXT NOT NULL,
            criterion TEXT NOT NULL, status TEXT NOT NULL, parent TEXT, config_json TEXT NOT NULL,
            metrics_json TEXT, folder TEXT UNIQUE, created_at TEXT NOT NULL, finished_at TEXT, error TEXT,
            params INTEGER, flops INTEGER, size_bytes INTEGER, latency_ms REAL, accuracy REAL, pid INTEGER,
            host TEXT, proc_start TEXT);""")
    with conn:
        conn.execute("INSERT INTO experiments (id, model, method, criterion, status, config_json, created_at, "
                     "params) VALUES ('v1', 'digits-mlp', 'channel', 'l1', 'failed', ?, '2026-01-01', 7)",
                     (CHANNEL.to_json(),))
    conn.close()
    store = Store()
    assert store.get("v1").params == 7 and store.occupant(home / "x")is None
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_sync_finds_a_run_whose_move_aside_was_cut_short(home):
    """Killed after its record was moved to <folder>.replaced-<id> but before its files were: the files are
    still in the folder, with the run's identity, and sync points the record back. And a moved run folder under
    the runs folder is its record's, not a new run."""
    store = Store()
    folder = home / "runs" / "cut"
    with runs.record(folder, CHANNEL) as finish:
        finish(_write_metrics(folder, _metrics(params=3)))
    store.relocate("cut", home / "runs" / "cut.replaced-cut")
    assert store.sync() == {"interrupted": [], "completed": [], "imported": []}
    assert store.get("cut").folder == folder.resolve()
    os.rename(folder, home / "runs" / "moved-by-hand")  # its identity goes with it
    assert store.sync()["imported"] == [] and store.get("cut").folder == (home / "runs" / "moved-by-hand").resolve()


# --- the command line ------------------------------------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 2 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert err.startswith("prunelab: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_cli_list_show_export_delete(home, tmp_path, capsys):
    store = Store()
    old = _saved(store, "old", metrics=_metrics(params=17226, flops=34048, accuracy=0.9667))
    new = _saved(store, "new", PruneConfig("digits-mlp", "unstructured", {"fc1": 0.9}), _metrics(accuracy=None))
    code, out, err = _cli(capsys, "experiments", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "model", "method", "status", "params", "FLOPs", "accuracy", "created", "(UTC)"]
    assert lines[1].split()[:7] == ["new", "digits-mlp", "unstructured", "done", "1,000", "2,000", "n/a"]
    assert lines[2].split()[:7] == ["old", "digits-mlp", "channel", "done", "17,226", "34,048", "0.9667"]
    code, out, _ = _cli(capsys, "experiments", "list", "--json")
    listed = json.loads(out)
    assert [e["id"] for e in listed] == [new, old] and "metrics" not in listed[0]
    assert listed[1]["config"] == PruneConfig("digits-mlp", "channel", {"fc1": 0.5}).to_dict()
    assert json.loads(_cli(capsys, "experiments", "list", "--json", "--model", "mnist-vit")[1]) == []
    by_method = json.loads(_cli(capsys, "experiments", "list", "--json", "--method", "channel")[1])
    assert [e["id"] for e in by_method] == [old]

    code, out, _ = _cli(capsys, "experiments", "show", old)
    assert code == 0 and "config:" in out and '"method": "channel"' in out and "test accuracy" in out
    assert json.loads(_cli(capsys, "experiments", "show", old, "--json")[1])["metrics"] == store.get(old).metrics

    code, out, _ = _cli(capsys, "experiments", "export", old, "--out", tmp_path / "x")
    assert code == 0 and out.startswith("wrote ") and (tmp_path / "x" / "model.onnx").read_bytes() == b"onnx of old"
    (home / "runs" / "old" / "model.int8.onnx").write_bytes(b"int8 of old")  # a run with int8 hands it out too
    code, out, _ = _cli(capsys, "experiments", "export", old, "--out", tmp_path / "x8")
    assert code == 0 and "model.int8.onnx" in out
    assert (tmp_path / "x8" / "model.int8.onnx").read_bytes() == b"int8 of old"
    _one_line_error(_cli(capsys, "experiments", "export", old, "--out", home / "runs" / "x"), "inside the run folders")

    _one_line_error(_cli(capsys, "experiments", "delete", old), "--yes")
    assert (home / "runs" / "old").is_dir()
    code, out, _ = _cli(capsys, "experiments", "delete", old, "--yes")
    assert code == 0 and out.startswith(f"deleted experiment {old}") and not (home / "runs" / "old").exists()

    for action in (["show"], ["delete", "--yes"], ["export", "--out", tmp_path / "y"]):
        _one_line_error(_cli(capsys, "experiments", action[0], "missing", *action[1:]), "no experiment 'missing'")
        _one_line_error(_cli(capsys, "experiments", action[0], "../new", *action[1:]), "no experiment '../new'")
    _one_line_error(_cli(capsys, "experiments"), "required")
    _one_line_error(_cli(capsys, "experiments", "list", "--status", "sleeping"), "invalid choice")


def test_cli_home_flag(home, tmp_path, capsys):
    other = tmp_path / "other-home"
    CHANNEL.save(other / "runs" / "elsewhere" / "config.json")  # a run folder --home's store imports
    write_atomic(other / "runs" / "elsewhere" / "metrics.json", json.dumps(_metrics()).encode())
    code, out, err = _cli(capsys, "--home", other, "experiments", "list", "--json")
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)] == ["elsewhere"]
    assert os.environ["PRUNELAB_HOME"] == str(home)  # restored after the command
    assert json.loads(_cli(capsys, "experiments", "list", "--json")[1]) == []  # $PRUNELAB_HOME's own store
    (tmp_path / "file").write_text("x")
    _one_line_error(_cli(capsys, "--home", tmp_path / "file", "experiments", "list"), "not a directory")


# --- a real process killed mid-run -----------------------------------------------------------------------------


def _wait_for_running(db: Path, folder: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            conn = sqlite3.connect(db, timeout=10)
            try:
                row = conn.execute("SELECT id FROM experiments WHERE folder = ? AND status = 'running'",
                                   (str(folder),)).fetchone()
            except sqlite3.OperationalError:  # the schema is being created
                row = None
            finally:
                conn.close()
            if row:
                return row[0]
        time.sleep(0.1)
    raise AssertionError(f"no running row for {folder} within {timeout} s")


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing(home):
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    cli = [sys.executable, "-m", "core.cli"]
    fast = ["--method", "channel", "--finetune-epochs", "0", "--latency-batches", "1"]
    done = {name: subprocess.Popen([*cli, "prune", "digits-mlp", *fast, "--ratio", ratio, "--out",
                                    home / "runs" / name], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            for name, ratio in (("first", "0.5"), ("second", "0.25"))}  # two writers at once
    for proc in done.values():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "wrote " in out and "prunelab: warning" not in err
    killed_dir = (home / "runs" / "killed").resolve()
    victim = subprocess.Popen([*cli, "apply", home / "runs" / "first" / "config.json", "--finetune-epochs", "20",
                               "--out", killed_dir], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        killed = _wait_for_running(home / "experiments.db", killed_dir)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    pruned_dir = (home / "runs" / "killed-prune").resolve()  # and `prunelab prune` itself, killed mid-run
    victim2 = subprocess.Popen([*cli, "prune", "digits-mlp", "--method", "channel", "--ratio", "0.5",
                                "--finetune-epochs", "20", "--out", pruned_dir], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        killed_prune = _wait_for_running(home / "experiments.db", pruned_dir)
    finally:
        victim2.send_signal(signal.SIGKILL)
        victim2.wait(timeout=30)

    conn = sqlite3.connect(home / "experiments.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    store = Store()
    store.sync()
    row = store.get(killed)
    assert (row.status, row.parent, row.pid) == ("interrupted", "first", victim.pid)
    for name in ("first", "second"):
        exp = store.get(name)
        folder = home / "runs" / name
        saved = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        assert exp.status == "done" and exp.metrics == saved and exp.config == PruneConfig.load(folder / "config.json")
        assert exp.params == saved["pruned"]["params"] and (folder / "model.onnx").stat().st_size
    proc = subprocess.run([*cli, "experiments", "list", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {e["id"]: e["status"] for e in json.loads(proc.stdout)} == {"first": "done", "second": "done",
                                                                        killed: "interrupted",
                                                                        killed_prune: "interrupted"}


# --- a store that degrades gracefully ---------------------------------------------------------------------------


BAD_ROWS = {  # id -> (column, value, a fragment of the reason shown)
    "future-config": ("config_json", json.dumps({"version": 99, "model": "digits-mlp"}), "config version 99"),
    "torn-metrics": ("metrics_json", '{"pruned": {"params": 1', "metrics"),
    "odd-number": ("params", "many", "params"),
    "odd-time": ("created_at", b"\xff\xfe", "created_at"),
}


def _with_bad_rows(home: Path) -> tuple[Store, str]:
    store = Store()
    good = _saved(store, "good", metrics=_metrics(params=4321))
    for exp_id, (column, value, _) in BAD_ROWS.items():
        _saved(store, exp_id)
        _sql(home, f"UPDATE experiments SET {column} = ? WHERE id = ?", (value, exp_id))
    return store, good


def test_unreadable_rows_are_named_and_the_rest_shown(home, capsys):
    store, good = _with_bad_rows(home)
    experiments, unreadable = store.scan()
    assert [e.id for e in experiments] == [good] == [e.id for e in store.list()]
    assert {u.id: u.status for u in unreadable} == dict.fromkeys(BAD_ROWS, "done")
    for u in unreadable:
        assert BAD_ROWS[u.id][2] in u.reason, (u.id, u.reason)
    assert [e.id for e in store.pareto("digits-mlp")] == [good]

    code, out, err = _cli(capsys, "experiments", "list")
    assert code == 0 and "Traceback" not in err, err
    assert out.splitlines()[1].split()[:5] == ["good", "digits-mlp", "channel", "done", "4,321"]
    for exp_id, (_, _, why) in BAD_ROWS.items():
        line = next(line for line in out.splitlines() if line.split()[:1] == [exp_id])
        assert "unreadable" in line and why in line, line
    listed = {e["id"]: e for e in json.loads(_cli(capsys, "experiments", "list", "--json")[1])}
    assert set(listed) == {good, *BAD_ROWS} and "unreadable" not in listed[good]
    assert BAD_ROWS["future-config"][2] in listed["future-config"]["unreadable"]
    assert _cli(capsys, "experiments", "show", good)[0] == 0
    _one_line_error(_cli(capsys, "experiments", "show", "torn-metrics"), "torn-metrics", "cannot be read", "metrics")
    code, out, _ = _cli(capsys, "experiments", "delete", "future-config", "--yes")  # a bad row can be removed
    assert code == 0 and "future-config" not in {u.id for u in Store().scan()[1]}


def test_a_corrupt_store_is_moved_aside_and_a_fresh_one_started(home, capsys):
    store = Store()
    kept = _saved(store, "kept", metrics=_metrics(params=777))  # a run folder under <workspace>/runs
    garbage = b"this is not an SQLite database " * 300
    for suffix in ("-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    store.path.write_bytes(garbage)
    code, out, err = _cli(capsys, "experiments", "list", "--json")
    assert code == 0, err
    (moved,) = home.glob("experiments.db.corrupt-*")
    assert moved.read_bytes() == garbage  # nothing deleted
    warning = [line for line in err.splitlines() if line.startswith("prunelab: warning: ")]
    assert len(warning) == 1 and str(moved) in warning[0] and "Traceback" not in err, err
    listed = json.loads(out)  # the fresh store found the run folders again
    assert [(e["id"], e["status"], e["params"]) for e in listed] == [(kept, "done", 777)]
    assert _cli(capsys, "experiments", "list")[0] == 0 and len(list(home.glob("experiments.db.corrupt-*"))) == 1


def test_a_damaged_store_keeps_the_rows_it_can_still_read(home):
    """A store whose pages are damaged (not garbage from the first byte) is moved aside too; the rows that can
    still be read are copied into the fresh one."""
    store = Store()
    for i in range(300):  # enough rows for many pages
        store.finish(store.start(home / "elsewhere" / f"r{i:03d}", CHANNEL), _metrics(params=i + 1))
    with store._connect() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(store.path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 4096] = b"\xff" * 4096  # one page in the middle destroyed
    store.path.write_bytes(bytes(data))
    fresh = Store()
    assert fresh.recovered is not None and fresh.recovered.exists()
    assert fresh.recovered.read_bytes() == bytes(data)
    with sqlite3.connect(fresh.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    saved = fresh.list()
    assert 0 < len(saved) <= 300 and all(e.params == int(e.id[1:]) + 1 for e in saved)

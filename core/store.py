"""The experiment store: one SQLite file listing every run, its status and headline numbers, so no work is lost.

A run's files stay in its folder (config.json, model.onnx, metrics.json; see core.runs). The store adds what a
folder cannot say by itself: that a run is still going, failed (and why) or was killed; which run it started
from; and its numbers in columns that filter, sort and give a Pareto front without opening every file.

Why these settings: WAL lets the dashboard read while the CLI writes; synchronous=FULL makes a committed row
survive a power cut; every write is one BEGIN IMMEDIATE transaction, so a killed process leaves the last
committed state and never half a change; the busy timeout makes a second writer wait instead of failing.
Each operation opens its own short connection, so one Store can be shared between threads.

A row remembers the process that started it (pid, its start time from /proc, host): opening the store turns a
'running' row whose process is gone into 'interrupted'. sync() also imports run folders under
<workspace>/runs that the store has not seen (e.g. written before it existed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import PruneConfig
from core.errors import PruneLabError
from core.files import write_atomic
from core.runs import workspace

SCHEMA_VERSION = 1
STATUSES = ("running", "done", "failed", "interrupted")
PARETO_AXES = ("flops", "size_bytes", "latency_ms")
NUMBERS = ("params", "flops", "size_bytes", "latency_ms", "accuracy")  # copied from metrics["pruned"]
RUN_FILES = ("config.json", "model.onnx", "metrics.json")  # metrics.json last: a folder that has it is complete
BUSY_TIMEOUT_S = 30.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS experiments (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        method TEXT NOT NULL,
        criterion TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
        parent TEXT,
        config_json TEXT NOT NULL,
        metrics_json TEXT,
        folder TEXT UNIQUE,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT,
        params INTEGER,
        flops INTEGER,
        size_bytes INTEGER,
        latency_ms REAL,
        accuracy REAL,
        pid INTEGER,
        host TEXT,
        proc_start TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS experiments_by_model ON experiments (model, method, status)",
    "CREATE INDEX IF NOT EXISTS experiments_by_created ON experiments (created_at)",
)
_COLUMNS = ("id", "model", "method", "criterion", "status", "parent", "config_json", "metrics_json", "folder",
            "created_at", "finished_at", "error", *NUMBERS, "pid", "host", "proc_start")


@dataclass(frozen=True)
class Experiment:
    """One recorded run. folder is None when a later run was written into the same folder (its files are
    gone; its config and metrics stay here). metrics is None until the run is done."""

    id: str
    model: str
    method: str
    criterion: str
    status: str
    parent: str | None
    config: PruneConfig
    metrics: dict | None
    folder: Path | None
    created_at: str
    finished_at: str | None
    error: str | None
    params: int | None
    flops: int | None
    size_bytes: int | None
    latency_ms: float | None
    accuracy: float | None
    pid: int | None
    host: str | None

    def to_dict(self, metrics: bool = True) -> dict[str, Any]:
        """JSON-ready fields (config as its dict; metrics left out if not wanted, e.g. in a long list)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(config=self.config.to_dict(), folder=None if self.folder is None else str(self.folder))
        if not metrics:
            del data["metrics"]
        return data


class Store:
    """The experiment store of the workspace (or of `path`); see the module docstring."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else workspace() / "experiments.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()
        self._reap()

    # --- connections -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (autocommit: transactions are explicit); SQLite errors become one-line
        PruneLabErrors naming the file."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise PruneLabError(f"cannot open the experiment store {self.path}: {e}") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        except sqlite3.Error as e:
            raise PruneLabError(f"experiment store {self.path}: {e}") from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock first (waiting up to the busy timeout),
        so a read-then-write never fails half way; `with conn` commits, or rolls back on any exception."""
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn

    def _open(self) -> None:
        """WAL mode, then the schema: created if missing; a newer schema than this code knows is refused."""
        with self._connect() as conn:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            if _schema_version(conn) == SCHEMA_VERSION:
                return
        with self._write() as conn:
            found = _schema_version(conn)
            if found is not None and found > SCHEMA_VERSION:
                raise PruneLabError(f"the experiment store {self.path} has schema version {found}, written by a "
                                    f"newer PruneLab (this one reads up to {SCHEMA_VERSION}); upgrade PruneLab")
            for statement in _SCHEMA:
                conn.execute(statement)
            if found is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    # --- recording a run ---------------------------------------------------------------------------------

    def start(self, run_dir: Path, config: PruneConfig, parent: str | None = None) -> str:
        """Record a run about to write into run_dir as 'running', with this process's id; returns its id (the
        folder's name, made unique). Rows that pointed at the same folder lose it: their files are replaced."""
        folder = str(Path(run_dir).resolve())
        pid = os.getpid()
        with self._write() as conn:
            exp_id = _free_id(conn, Path(folder).name)
            conn.execute("UPDATE experiments SET folder = NULL WHERE folder = ?", (folder,))
            _insert(conn, id=exp_id, model=config.model, method=config.method, criterion=config.criterion,
                    status="running", parent=parent, config_json=config.to_json(), folder=folder,
                    created_at=_now(), pid=pid, host=socket.gethostname(), proc_start=_process_start(pid))
        return exp_id

    def finish(self, exp_id: str, metrics: dict) -> None:
        """Mark a run done with its metrics (the metrics.json dict); its numbers are copied into columns."""
        with self._write() as conn:
            _set_done(conn, exp_id, metrics, _now())

    def fail(self, exp_id: str, message: str) -> None:
        """Mark a run failed, keeping the error message."""
        self._set_status(exp_id, "failed", message)

    def interrupt(self, exp_id: str, message: str = "interrupted") -> None:
        """Mark a run interrupted (stopped before it finished, e.g. Ctrl+C)."""
        self._set_status(exp_id, "interrupted", message)

    def _set_status(self, exp_id: str, status: str, message: str) -> None:
        with self._write() as conn:
            cur = conn.execute("UPDATE experiments SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                               (status, message, _now(), exp_id))
            if cur.rowcount == 0:
                raise _unknown(exp_id)

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, exp_id: str) -> Experiment:
        """One experiment by id; PruneLabError if there is none."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise _unknown(exp_id)
        return _experiment(row)

    def list(self, model: str | None = None, method: str | None = None,
             status: str | None = None) -> list[Experiment]:
        """Experiments matching every filter given, newest first."""
        if status is not None and status not in STATUSES:
            raise PruneLabError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
        filters = {k: v for k, v in (("model", model), ("method", method), ("status", status)) if v is not None}
        where = " AND ".join(f"{k} = ?" for k in filters) or "1"
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM experiments WHERE {where} ORDER BY created_at DESC, rowid DESC",
                                tuple(filters.values())).fetchall()
        return [_experiment(r) for r in rows]

    def id_for_folder(self, folder: Path) -> str | None:
        """The experiment whose run folder this is, or None; a folder under <workspace>/runs not yet recorded
        is imported first (sync)."""
        key = Path(folder).resolve()
        found = self._folder_id(key)
        if found is None and _within(key, _runs_root()):
            self.sync()
            found = self._folder_id(key)
        return found

    def _folder_id(self, folder: Path) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT id FROM experiments WHERE folder = ?", (str(folder),)).fetchone()
        return None if row is None else row["id"]

    def diff(self, a: str, b: str) -> list[dict[str, Any]]:
        """How two experiments' configs differ: one row per unit/layer (its ratio in a and in b; a unit missing
        from a config has ratio 0), per removed block, then per setting (method, criterion, schedule.*,
        finetune.*, ...). Each row: {"kind", "name", "a", "b", "changed"}; unchanged rows are included."""
        return config_diff(self.get(a).config, self.get(b).config)

    def pareto(self, model: str, x: str = "flops") -> list[Experiment]:
        """The done experiments of `model` that no other one beats on both x (lower is better) and accuracy
        (higher is better), sorted by x. Experiments without an accuracy (None: a model without test data) or
        without x are left out: they cannot be placed on the front. Identical points are all kept."""
        if x not in PARETO_AXES:
            raise PruneLabError(f"cannot build a Pareto front on {x!r}; choose one of {', '.join(PARETO_AXES)}")
        points = [e for e in self.list(model=model, status="done")
                  if e.accuracy is not None and getattr(e, x) is not None]
        return pareto_front(points, x)

    # --- files -------------------------------------------------------------------------------------------

    def delete(self, exp_id: str, keep_files: bool = False) -> Path | None:
        """Remove an experiment's row and its run folder; returns the folder removed (None if none was).

        Only folders that resolve inside <workspace>/runs are ever deleted: any other folder (a CLI --out, or a
        tampered row) is refused unless keep_files, which forgets the row and leaves the files. A running
        experiment is refused: its process is still writing. The folder is first renamed to a hidden name, so
        a crash mid-way never leaves a half-deleted folder that looks like a run."""
        exp = self.get(exp_id)
        if exp.status == "running":
            raise PruneLabError(f"experiment {exp_id} is still running (process {exp.pid} on {exp.host}); "
                                "stop it before deleting")
        folder = None if keep_files or exp.folder is None else _owned(exp.folder)
        trash = _to_trash(folder) if folder is not None and folder.exists() else None
        with self._write() as conn:
            conn.execute("DELETE FROM experiments WHERE id = ?", (exp_id,))
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return folder

    def export(self, exp_id: str, dest_dir: Path) -> list[Path]:
        """Copy a done experiment's config.json, model.onnx and metrics.json into dest_dir (each atomically,
        metrics.json last). The source must lie inside <workspace>/runs; a destination inside it is refused
        (exporting must never write into a run folder)."""
        exp = self.get(exp_id)
        if exp.status != "done" or exp.folder is None:
            why = f"is {exp.status}" if exp.status != "done" else "has no files (a later run replaced them)"
            raise PruneLabError(f"experiment {exp_id} {why}: nothing to export")
        src, dest = _owned(exp.folder), Path(dest_dir)
        if _within(dest.resolve(), _runs_root(), or_equal=True):
            raise PruneLabError(f"will not export into {dest}: it is inside the run folders {_runs_root()}")
        # a run whose ONNX export failed has no model.onnx (its metrics.json says why): the rest is exported
        names = [n for n in RUN_FILES if n != "model.onnx" or "onnx_error" not in (exp.metrics or {}).get("pruned", {})]
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise PruneLabError(f"experiment {exp_id}: {src} lacks {', '.join(missing)}")
        try:
            dest.mkdir(parents=True, exist_ok=True)
            for name in names:
                write_atomic(dest / name, (src / name).read_bytes())
        except OSError as e:
            raise PruneLabError(f"cannot export into {dest}: {e}") from None
        return [dest / n for n in names]

    # --- repair ------------------------------------------------------------------------------------------

    def sync(self) -> dict[str, list[str]]:
        """Make the store agree with the processes and folders that exist; returns the ids touched per kind:
        'interrupted' (running, but its process is gone), 'completed' (interrupted, but its folder holds
        metrics.json: the process died after writing it), 'imported' (run folders not yet recorded: done if
        complete, else interrupted; folders without a readable config.json are left alone)."""
        return {"interrupted": self._reap(), "completed": self._complete(), "imported": self._import()}

    def _reap(self) -> list[str]:
        """'running' rows of this host whose process is gone become 'interrupted'."""
        host = socket.gethostname()
        with self._connect() as conn:
            rows = conn.execute("SELECT id, pid, proc_start FROM experiments WHERE status = 'running' AND host = ?",
                                (host,)).fetchall()
        dead = [r["id"] for r in rows if r["pid"] is None or not _alive(r["pid"], r["proc_start"])]
        if dead:
            with self._write() as conn:
                for exp_id in dead:
                    conn.execute("UPDATE experiments SET status = 'interrupted', finished_at = ?, error = ? "
                                 "WHERE id = ? AND status = 'running'",
                                 (_now(), "its process ended before the run finished", exp_id))
        return dead

    def _complete(self) -> list[str]:
        """Interrupted rows whose folder holds a readable metrics.json are done after all."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, folder FROM experiments WHERE status = 'interrupted' "
                                "AND folder IS NOT NULL AND metrics_json IS NULL").fetchall()
        found = {r["id"]: m for r in rows if (m := _read_metrics(Path(r["folder"]))) is not None}
        if found:
            with self._write() as conn:
                for exp_id, (metrics, finished) in found.items():
                    _set_done(conn, exp_id, metrics, finished)
        return list(found)

    def _import(self) -> list[str]:
        """Record run folders under <workspace>/runs that no row points at."""
        root = _runs_root()
        with self._connect() as conn:
            known = {r["folder"] for r in conn.execute("SELECT folder FROM experiments WHERE folder IS NOT NULL")}
        found = [r for d in _run_folders(root) if str(d) not in known and (r := _folder_record(d)) is not None]
        imported = []
        if found:
            with self._write() as conn:
                for record in found:
                    if conn.execute("SELECT 1 FROM experiments WHERE folder = ?", (record["folder"],)).fetchone():
                        continue  # another process imported it meanwhile
                    record["id"] = _free_id(conn, Path(record["folder"]).name)
                    _insert(conn, **record)
                    imported.append(record["id"])
        return imported


# --- rows ----------------------------------------------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
        return None
    row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
    return row["v"]


def _insert(conn: sqlite3.Connection, **values: Any) -> None:
    names = [c for c in _COLUMNS if c in values]
    conn.execute(f"INSERT INTO experiments ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [values[n] for n in names])


def _set_done(conn: sqlite3.Connection, exp_id: str, metrics: dict, finished_at: str) -> None:
    numbers = _numbers(metrics)
    cur = conn.execute(
        f"UPDATE experiments SET status = 'done', metrics_json = ?, finished_at = ?, error = NULL, "
        f"{', '.join(f'{k} = ?' for k in NUMBERS)} WHERE id = ?",
        (json.dumps(metrics, sort_keys=True), finished_at, *(numbers[k] for k in NUMBERS), exp_id))
    if cur.rowcount == 0:
        raise _unknown(exp_id)


def _experiment(row: sqlite3.Row) -> Experiment:
    return Experiment(
        id=row["id"], model=row["model"], method=row["method"], criterion=row["criterion"], status=row["status"],
        parent=row["parent"], config=PruneConfig.from_json(row["config_json"]),
        metrics=None if row["metrics_json"] is None else json.loads(row["metrics_json"]),
        folder=None if row["folder"] is None else Path(row["folder"]), created_at=row["created_at"],
        finished_at=row["finished_at"], error=row["error"], **{k: row[k] for k in NUMBERS},
        pid=row["pid"], host=row["host"])


def _numbers(metrics: dict) -> dict[str, float | int | None]:
    """The pruned model's headline numbers (metrics["pruned"], or metrics itself if flat); None if absent."""
    pruned = metrics.get("pruned") if isinstance(metrics.get("pruned"), dict) else metrics
    out: dict[str, float | int | None] = {}
    for key in NUMBERS:
        value = pruned.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        out[key] = value if ok else None
    return out


def _unknown(exp_id: str) -> PruneLabError:
    return PruneLabError(f"no experiment {exp_id!r} (see: prunelab experiments list)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="microseconds")


def _free_id(conn: sqlite3.Connection, name: str) -> str:
    """An unused id from a folder name: only letters, digits, '.', '_', '-' (never a path), then -2, -3..."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:100] or "run"
    for n in range(1, 100_000):
        candidate = stem if n == 1 else f"{stem}-{n}"
        if conn.execute("SELECT 1 FROM experiments WHERE id = ?", (candidate,)).fetchone() is None:
            return candidate
    raise PruneLabError(f"no free experiment id for {name!r}")


# --- diff and Pareto -------------------------------------------------------------------------------------------


def config_diff(a: PruneConfig, b: PruneConfig) -> list[dict[str, Any]]:
    """Store.diff on two configs: ratio rows, removed-block rows, then setting rows."""
    rows = [_row("ratio", u, a.ratios.get(u, 0.0), b.ratios.get(u, 0.0)) for u in sorted({*a.ratios, *b.ratios})]
    rows += [_row("remove_block", k, k in a.remove_blocks, k in b.remove_blocks)
             for k in sorted({*a.remove_blocks, *b.remove_blocks})]
    fa, fb = _settings(a), _settings(b)
    return rows + [_row("setting", k, fa[k], fb[k]) for k in fa]


def _row(kind: str, name: str, a: Any, b: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "a": a, "b": b, "changed": a != b}


def _settings(config: PruneConfig) -> dict[str, Any]:
    """Every config field but the ratios and blocks, nested ones flattened (schedule.kind, finetune.epochs)."""
    data = config.to_dict()
    for key in ("ratios", "remove_blocks", "version"):
        del data[key]
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def pareto_front(points: list[Experiment], x: str) -> list[Experiment]:
    """Points not dominated on (x lower, accuracy higher), by x. Sorted by x then accuracy descending, a point
    is on the front iff its accuracy beats every earlier one, or it equals the last point kept."""
    front: list[Experiment] = []
    for e in sorted(points, key=lambda e: (getattr(e, x), -e.accuracy)):
        if not front or e.accuracy > front[-1].accuracy:
            front.append(e)
        elif (getattr(e, x), e.accuracy) == (getattr(front[-1], x), front[-1].accuracy):
            front.append(e)
    return front


# --- folders -------------------------------------------------------------------------------------------------


def _runs_root() -> Path:
    return (workspace() / "runs").resolve()


def _within(path: Path, root: Path, or_equal: bool = False) -> bool:
    return path.is_relative_to(root) and (or_equal or path != root)


def _owned(folder: Path) -> Path:
    """The folder, resolved, if it lies inside <workspace>/runs; PruneLabError otherwise."""
    resolved, root = folder.resolve(), _runs_root()
    if not _within(resolved, root):
        raise PruneLabError(f"{folder} is outside {root}: PruneLab only deletes or exports run folders it keeps "
                            "there (delete --keep-files forgets the record and leaves the files)")
    return resolved


def _to_trash(folder: Path) -> Path:
    trash = folder.with_name(f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, trash)
    except OSError as e:
        raise PruneLabError(f"cannot delete {folder}: {e}") from None
    return trash


def _run_folders(root: Path) -> list[Path]:
    """Candidate run folders (resolved), hidden ones (deletions in progress) skipped."""
    if not root.is_dir():
        return []
    return sorted(d.resolve() for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_metrics(folder: Path) -> tuple[dict, str] | None:
    """(metrics, mtime) of a folder's metrics.json, or None if it is missing or unreadable."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        return (metrics, _mtime(path)) if isinstance(metrics, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _folder_record(folder: Path) -> dict[str, Any] | None:
    """Row values for an unrecorded run folder: done with its metrics, or interrupted if it has none."""
    try:
        config = PruneConfig.load(folder / "config.json")
        created = _mtime(folder / "config.json")
    except (PruneLabError, OSError):
        return None
    record = dict(model=config.model, method=config.method, criterion=config.criterion, config_json=config.to_json(),
                  folder=str(folder), created_at=created)
    found = _read_metrics(folder)
    if found is None:
        return record | dict(status="interrupted", error="found without metrics.json (the run did not finish)")
    metrics, finished = found
    return record | dict(status="done", metrics_json=json.dumps(metrics, sort_keys=True), finished_at=finished,
                         **_numbers(metrics))


# --- processes -----------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (after the command name), or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot): with the pid, it tells a reused pid apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    """Whether process pid (started at `started`, if known) still runs on this host; zombies are dead."""
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] != "Z" and (started is None or _process_start(pid) == started)
    if os.name == "nt":
        return True  # cannot tell without /proc (os.kill would terminate it): assume alive
    if Path("/proc/self/stat").exists():
        return False  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The experiment store: one SQLite file listing every run, its status and headline numbers, so no work is lost.

It is the one listing of runs, and its record (core.store_rows.Experiment) the one run type every surface reads:
the CLI's `experiments`, the Results, Export and Experiments pages. A run's files stay in its folder (config.json,
model.onnx, metrics.json; see core.runs), found through its record. The store adds what a folder cannot say by
itself: that a run is still going, failed (and why) or was killed; which run it started from; and its numbers in
columns that filter, sort and give a Pareto front (core.store_compare) without opening every file.

A record is always its run's own: a row carries its run's uid, which the run also writes into its folder first
(core.run_folder) and into its metrics.json; completing, importing and repairing only ever take metrics that
carry the row's uid, so a run killed in a folder that held an earlier run never inherits the earlier run's
numbers.

Why these settings: WAL lets the dashboard read while the CLI writes; synchronous=FULL makes a committed row
survive a power cut; every write is one BEGIN IMMEDIATE transaction, so a killed process leaves the last
committed state and never half a change; a writer waits for another (up to BUSY_TIMEOUT_S) in short steps, so
Ctrl+C still stops it. Each operation opens its own short connection, so one Store can be shared between threads.

It degrades instead of failing: a row that cannot be read is listed as unreadable (id and reason) beside the
rest; a damaged database file is moved aside (nothing deleted), the rows still readable copied into a fresh
one; a store that cannot be written (read-only or full disk) is still read (read_only says why).

A row remembers the process that started it (pid, its start time from /proc, host): opening the store turns a
'running' row whose process is gone into 'interrupted'. sync() also imports run folders under
<workspace>/runs that the store has not seen (e.g. written before it existed, or copied in): that repair is
the only way a folder becomes a listed run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import run_folder
from core.config import PruneConfig
from core.errors import PruneLabError
from core.files import write_atomic
from core.processes import alive, process_start
from core.run_folder import HANDED_OUT, RUN_FILES
from core.store_compare import config_diff, judged_by, pareto_front, task_value
from core.store_folders import folder_record, moved_here, own_metrics
from core.store_recovery import move_aside, salvage
from core.store_rows import NUMBERS, BadRow, Experiment, Unreadable, experiment, numbers, runs_root, unreadable
from core.workspace import workspace

__all__ = ["PARETO_AXES", "RUN_FILES", "SCHEMA_VERSION", "STATUSES", "Experiment", "Store", "Unreadable"]

SCHEMA_VERSION = 2  # 2 added run_uid
STATUSES = ("running", "done", "failed", "interrupted")
PARETO_AXES = ("flops", "size_bytes", "latency_ms")
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another one
BUSY_STEP_MS = 50  # ... in steps this long, between which Ctrl+C is seen
DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")  # error names (prefixes) of a damaged database file
UNWRITABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_PERM")

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
        proc_start TEXT,
        run_uid TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS experiments_by_model ON experiments (model, method, status)",
    "CREATE INDEX IF NOT EXISTS experiments_by_created ON experiments (created_at)",
    "CREATE INDEX IF NOT EXISTS experiments_by_uid ON experiments (run_uid)",
)
_MIGRATIONS = {1: ("ALTER TABLE experiments ADD COLUMN run_uid TEXT",)}  # from version -> statements to the next
_COLUMNS = ("id", "model", "method", "criterion", "status", "parent", "config_json", "metrics_json", "folder",
            "created_at", "finished_at", "error", *NUMBERS, "pid", "host", "proc_start", "run_uid")
_log = logging.getLogger(__name__)


class StoreError(PruneLabError):
    """An SQLite error on the store, as one line; code is SQLite's error name (e.g. SQLITE_NOTADB)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class Store:
    """The experiment store of the workspace (or of `path`); see the module docstring.

    recovered: where a damaged database file was moved when this Store opened it (None if it was not);
    notice says so in a sentence. read_only: why the store cannot be written (None if it can); reads still work.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else workspace() / "experiments.db"
        self.recovered: Path | None = None
        self.notice: str | None = None
        self.read_only: str | None = None
        self._uri: str | None = None  # a read-only URI once the file cannot be written
        with contextlib.suppress(OSError):  # a read-only parent that exists is fine: checked on opening
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()
        self._try_write(self._reap)

    # --- connections -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (autocommit: transactions are explicit); SQLite errors become one-line
        StoreErrors naming the file."""
        try:
            target = self._uri or str(self.path)
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=self._uri is not None)
        except sqlite3.Error as e:
            raise _error(f"cannot open the experiment store {self.path}", e) from None
        try:
            conn.row_factory = sqlite3.Row
            if self._uri is None:
                conn.execute("PRAGMA synchronous=FULL")
            yield conn
        except sqlite3.Error as e:
            raise _error(f"experiment store {self.path}", e) from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock first, so a read-then-write never fails
        half way; another writer is waited for in BUSY_STEP_MS steps (Python sees Ctrl+C between them, not
        during SQLite's own wait); `with conn` commits, or rolls back on any exception."""
        if self.read_only:
            raise PruneLabError(f"the experiment store {self.path} cannot be written ({self.read_only})")
        with self._connect() as conn, conn:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_STEP_MS}")
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if getattr(e, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() > deadline:
                        raise
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            yield conn

    def _try_write(self, step) -> Any:
        """Run a repair step that writes; if the store cannot be written it becomes read-only (reads go on)."""
        try:
            return step()
        except StoreError as e:
            if not e.code.startswith(UNWRITABLE):
                raise
            self.read_only = str(e)
            return []
        except PruneLabError:
            if self.read_only:
                return []
            raise

    # --- opening: schema, damage, read-only ----------------------------------------------------------------

    def _open(self) -> None:
        """WAL mode and the schema (created or migrated; a newer one is refused); a damaged file is moved aside
        and a fresh store started; a file that cannot be written is opened read-only."""
        try:
            self._prepare()
        except StoreError as e:
            if e.code.startswith(DAMAGED):
                self._recover(str(e))
            elif e.code.startswith(UNWRITABLE) and self.path.is_file():
                self._open_read_only(e)
            elif e.code.startswith(UNWRITABLE) and not os.access(self.path.parent, os.W_OK):
                raise PruneLabError(f"cannot create the experiment store {self.path}: its folder is read-only") \
                    from None
            else:
                raise

    def _prepare(self) -> None:
        with self._connect() as conn:
            wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise StoreError(f"experiment store {self.path}: damaged ({problems[0]})", "SQLITE_CORRUPT")
            found = _schema_version(conn)
            if wal and found == SCHEMA_VERSION:
                return
            if found is not None and found > SCHEMA_VERSION:
                raise PruneLabError(f"the experiment store {self.path} has schema version {found}, written by a "
                                    f"newer PruneLab (this one reads up to {SCHEMA_VERSION}); upgrade PruneLab")
            if not wal:
                conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
        with self._write() as conn:
            _create_or_migrate(conn)

    def _open_read_only(self, error: StoreError) -> None:
        """Read the store without writing (a read-only folder, a full disk): first as a normal read-only
        connection, else as an immutable file (then what the last writer left in its WAL is not seen)."""
        why = "its folder is read-only" if not os.access(self.path.parent, os.W_OK) else str(error)
        for query in ("mode=ro", "immutable=1"):
            self._uri = f"{self.path.absolute().as_uri()}?{query}"
            try:
                with self._connect() as conn:
                    found = _schema_version(conn)
                    conn.execute("SELECT id FROM experiments LIMIT 1").fetchall()
            except StoreError:
                continue
            if found is not None and found > SCHEMA_VERSION:
                raise PruneLabError(f"the experiment store {self.path} has schema version {found}, written by a "
                                    f"newer PruneLab (this one reads up to {SCHEMA_VERSION}); upgrade PruneLab")
            self.read_only = why
            return
        self._uri = None
        raise PruneLabError(f"cannot open the experiment store {self.path}: {why}")

    def _recover(self, reason: str) -> None:
        """Move the damaged file (and its -wal, -shm) aside to <name>.corrupt-<UTC time>, start a fresh store,
        copy into it the rows that can still be read. Another process may have done it meanwhile: checked again
        under a lock on the folder."""
        with run_folder.exclusive(self.path.with_name(self.path.name + ".recover.lock")):
            try:
                self._prepare()
                return  # repaired by another process while we waited
            except StoreError as e:
                if not e.code.startswith(DAMAGED):
                    raise
            self.recovered = move_aside(self.path)
            rows = salvage(self.recovered)
            self._prepare()
            with self._write() as conn:
                for row in rows:
                    names = [c for c in _COLUMNS if c in row]
                    conn.execute(f"INSERT OR IGNORE INTO experiments ({', '.join(names)}) VALUES "
                                 f"({', '.join('?' * len(names))})", [row[n] for n in names])
        self.notice = (f"the experiment store {self.path} was damaged ({reason.split(': ', 1)[-1]}); it was moved "
                       f"to {self.recovered} (nothing deleted) and a new store started with the {len(rows)} "
                       f"record(s) still readable; run folders under {runs_root()} are found again")
        _log.warning(self.notice)

    # --- recording a run ---------------------------------------------------------------------------------

    def start(self, run_dir: Path, config: PruneConfig, parent: str | None = None, run_uid: str | None = None) -> str:
        """Record a run about to write into run_dir as 'running', with this process's id and its run uid (see
        core.run_folder); returns its id (the folder's name, made unique). Rows that still point at the folder
        lose it (core.runs.record moves a run that is still there aside first, with its record)."""
        folder = str(Path(run_dir).resolve())
        pid = os.getpid()
        with self._write() as conn:
            exp_id = _free_id(conn, Path(folder).name)
            conn.execute("UPDATE experiments SET folder = NULL WHERE folder = ?", (folder,))
            _insert(conn, id=exp_id, model=config.model, method=config.method, criterion=config.criterion,
                    status="running", parent=parent, config_json=config.to_json(), folder=folder,
                    created_at=_now(), pid=pid, host=socket.gethostname(), proc_start=process_start(pid),
                    run_uid=run_uid)
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

    # --- the run in a folder -----------------------------------------------------------------------------

    def occupant(self, folder: Path, uid: str | None = None) -> dict[str, Any] | None:
        """The recorded run whose uid is uid, else the one whose folder this is: {"id", "status", "run_uid",
        "folder"}; None if neither is recorded."""
        with self._connect() as conn:
            row = conn.execute("SELECT id, status, run_uid, folder FROM experiments WHERE run_uid = ?",
                               (uid,)).fetchone() if uid else None
            row = row or conn.execute("SELECT id, status, run_uid, folder FROM experiments WHERE folder = ?",
                                      (str(Path(folder).resolve()),)).fetchone()
        return None if row is None else dict(row)

    def give_uid(self, exp_id: str) -> str:
        """The run uid of a row, given one now if it has none (a run recorded before uids existed)."""
        with self._write() as conn:
            row = conn.execute("SELECT run_uid FROM experiments WHERE id = ?", (exp_id,)).fetchone()
            if row is None:
                raise _unknown(exp_id)
            if row["run_uid"]:
                return row["run_uid"]
            uid = uuid.uuid4().hex
            conn.execute("UPDATE experiments SET run_uid = ? WHERE id = ?", (uid, exp_id))
            return uid

    def relocate(self, exp_id: str, folder: Path) -> None:
        """Record that a run's files now live in folder (moved aside by a newer run, or found there)."""
        with self._write() as conn:
            if conn.execute("UPDATE experiments SET folder = ? WHERE id = ?",
                            (str(Path(folder).resolve()), exp_id)).rowcount == 0:
                raise _unknown(exp_id)

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, exp_id: str) -> Experiment:
        """One experiment by id; PruneLabError if there is none or it cannot be read (saying why)."""
        row = self._raw(exp_id)
        try:
            return experiment(row)
        except BadRow as e:
            raise PruneLabError(f"experiment {exp_id} cannot be read: {e} (`prunelab experiments delete {exp_id} "
                                "--yes` removes the record)") from None

    def folder_of(self, exp_id: str) -> Path | None:
        """An experiment's folder as recorded (None if it has none), also for a row that cannot be read."""
        folder = self._raw(exp_id)["folder"]
        return Path(folder) if isinstance(folder, str) else None

    def _raw(self, exp_id: str) -> sqlite3.Row:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise _unknown(exp_id)
        return row

    def list(self, model: str | None = None, method: str | None = None,
             status: str | None = None) -> list[Experiment]:
        """Readable experiments matching every filter given, newest first (scan() also returns the others)."""
        return self.scan(model, method, status)[0]

    def scan(self, model: str | None = None, method: str | None = None,
             status: str | None = None) -> tuple[list[Experiment], list[Unreadable]]:
        """Experiments matching every filter given, newest first: those that read back, and those that do not
        (each with its reason), so one bad row never hides the others."""
        if status is not None and status not in STATUSES:
            raise PruneLabError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
        filters = {k: v for k, v in (("model", model), ("method", method), ("status", status)) if v is not None}
        where = " AND ".join(f"{k} = ?" for k in filters) or "1"
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM experiments WHERE {where} ORDER BY created_at DESC, rowid DESC",
                                tuple(filters.values())).fetchall()
        good, bad = [], []
        for row in rows:
            try:
                good.append(experiment(row))
            except BadRow as e:
                bad.append(unreadable(row, str(e)))
        return good, bad

    def id_for_folder(self, folder: Path) -> str | None:
        """The experiment whose run folder this is, or None; a folder under <workspace>/runs not yet recorded
        is imported first (sync)."""
        key = Path(folder).resolve()
        found = self._folder_id(key)
        if found is None and _within(key, runs_root()) and not self.read_only:
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
        (higher is better; a language model's perplexity, lower is better),
        sorted by x. Experiments without an accuracy (None: a model without test data) or
        without x are left out: they cannot be placed on the front. Identical points are all kept."""
        if x not in PARETO_AXES:
            raise PruneLabError(f"cannot build a Pareto front on {x!r}; choose one of {', '.join(PARETO_AXES)}")
        done = self.list(model=model, status="done")
        metric = judged_by(done)  # a language model's perplexity (lower is better), else accuracy
        points = [e for e in done if task_value(e, metric) is not None and getattr(e, x) is not None]
        return pareto_front(points, x, metric)

    def damaged_copies(self) -> list[Path]:
        """Damaged store files moved aside earlier (kept until the user removes them), oldest first."""
        return sorted(p for p in self.path.parent.glob(f"{self.path.name}.corrupt-*")
                      if not p.name.endswith(("-wal", "-shm")))

    # --- files -------------------------------------------------------------------------------------------

    def delete(self, exp_id: str, keep_files: bool = False) -> Path | None:
        """Remove an experiment's row and its run folder; returns the folder removed (None if none was).

        Only folders that resolve inside <workspace>/runs are ever deleted: any other folder (a CLI --out, or a
        tampered row) is refused unless keep_files, which forgets the row and leaves the files. A running
        experiment is refused: its process is still writing. The folder is first renamed to a hidden name, so
        a crash mid-way never leaves a half-deleted folder that looks like a run. A row that cannot be read
        can still be deleted."""
        row = self._raw(exp_id)
        if row["status"] == "running":
            raise PruneLabError(f"experiment {exp_id} is still running (process {row['pid']} on {row['host']}); "
                                "stop it before deleting")
        recorded = row["folder"] if isinstance(row["folder"], str) else None
        folder = None if keep_files or recorded is None else _owned(Path(recorded))
        trash = _to_trash(folder) if folder is not None and folder.exists() else None
        with self._write() as conn:
            conn.execute("DELETE FROM experiments WHERE id = ?", (exp_id,))
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return folder

    def export(self, exp_id: str, dest_dir: Path) -> list[Path]:
        """Copy a done experiment's config.json, model.onnx, model.safetensors (if it has one) and metrics.json
        into dest_dir (each atomically, metrics.json last). The source must lie inside <workspace>/runs; a
        destination inside it is refused (exporting must never write into a run folder)."""
        exp = self.get(exp_id)
        if exp.status != "done" or exp.folder is None:
            why = f"is {exp.status}" if exp.status != "done" else "has no files (a later run replaced them)"
            raise PruneLabError(f"experiment {exp_id} {why}: nothing to export")
        src, dest = _owned(exp.folder), Path(dest_dir)
        if _within(dest.resolve(), runs_root(), or_equal=True):
            raise PruneLabError(f"will not export into {dest}: it is inside the run folders {runs_root()}")
        # a run whose ONNX export failed has no model.onnx (its metrics.json says why): the rest is exported
        names = [n for n in RUN_FILES if n != "model.onnx" or "onnx_error" not in (exp.metrics or {}).get("pruned", {})]
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise PruneLabError(f"experiment {exp_id}: {src} lacks {', '.join(missing)}")
        # the weights too where the run kept them (runs recorded before it have none): never required
        names = [n for n in HANDED_OUT if n in names or (n not in RUN_FILES and (src / n).is_file())]
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
        'interrupted' (running, but its process is gone), 'completed' (interrupted, but its folder holds the
        metrics.json its own run wrote: the process died after writing it), 'imported' (run folders not yet
        recorded: done if complete, else interrupted; folders without a readable config.json, or whose run
        still writes them, are left alone). A run moved aside whose record was not yet updated (its process
        killed in between) is found again first. A store that cannot be written is left as it is."""
        if self.read_only:
            return {"interrupted": [], "completed": [], "imported": []}
        report = {"interrupted": self._try_write(self._reap)}
        self._try_write(self._restore)
        report["completed"] = self._try_write(self._complete)
        report["imported"] = self._try_write(self._import)
        return report

    def _reap(self) -> list[str]:
        """'running' rows of this host whose process is gone become 'interrupted'."""
        if self.read_only:
            return []
        host = socket.gethostname()
        with self._connect() as conn:
            rows = conn.execute("SELECT id, pid, proc_start FROM experiments WHERE status = 'running' AND host = ?",
                                (host,)).fetchall()
        dead = [r["id"] for r in rows if not isinstance(r["pid"], int) or not alive(r["pid"], r["proc_start"])]
        if dead:
            with self._write() as conn:
                for exp_id in dead:
                    conn.execute("UPDATE experiments SET status = 'interrupted', finished_at = ?, error = ? "
                                 "WHERE id = ? AND status = 'running'",
                                 (_now(), "its process ended before the run finished", exp_id))
        return dead

    def _restore(self) -> list[str]:
        """Rows recorded as moved aside (<folder>.replaced-<id>) whose move never happened (the process was
        killed between recording and moving): their files are still in the original folder, which holds their
        identity; point the row back there."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, folder, run_uid FROM experiments WHERE run_uid IS NOT NULL "
                                "AND folder LIKE ?", (f"%{run_folder.REPLACED}%",)).fetchall()
        back = {}
        for r in rows:
            original = run_folder.replaced_original(Path(r["folder"]))
            if original is None or Path(r["folder"]).exists() or run_folder.in_use(original):
                continue  # moved, or being moved right now by the run that holds the folder
            identity = run_folder.read_identity(original)
            if identity is not None and identity.uid == r["run_uid"]:
                back[r["id"]] = original
        for exp_id, original in back.items():
            self.relocate(exp_id, original)
        return list(back)

    def _complete(self) -> list[str]:
        """Interrupted rows whose folder holds the metrics.json their own run wrote (same run uid and config;
        for a row recorded before uids, a metrics.json without one, newer than the row, beside the same config)
        are done after all. Any other metrics.json is some other run's and is never taken."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM experiments WHERE status = 'interrupted' "
                                "AND folder IS NOT NULL AND metrics_json IS NULL").fetchall()
        found = {r["id"]: m for r in rows if (m := own_metrics(r)) is not None}
        if found:
            with self._write() as conn:
                for exp_id, (metrics, finished) in found.items():
                    _set_done(conn, exp_id, metrics, finished)
        return list(found)

    def _import(self) -> list[str]:
        """Record run folders under <workspace>/runs that no row points at (a folder whose run uid is already
        recorded is that row's, moved: the row is pointed at it instead)."""
        root = runs_root()
        with self._connect() as conn:
            known = {r["folder"] for r in conn.execute("SELECT folder FROM experiments WHERE folder IS NOT NULL")}
        found = [r for d in _run_folders(root) if str(d) not in known and (r := folder_record(d)) is not None]
        imported = []
        for record, metrics in found:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM experiments WHERE folder = ?", (record["folder"],)).fetchone():
                    continue  # another process imported it meanwhile
                if moved_here(conn, record):
                    continue
                record["id"] = _free_id(conn, Path(record["folder"]).name)
                _insert(conn, **record, **(numbers(metrics) if metrics is not None else {}))
                imported.append(record["id"])
        return imported


# --- rows ----------------------------------------------------------------------------------------------------


def _error(where: str, e: sqlite3.Error) -> StoreError:
    return StoreError(f"{where}: {e}", getattr(e, "sqlite_errorname", "") or "")


def _schema_version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
        return None
    row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
    return row["v"]


def _create_or_migrate(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: the schema of a new file, or the migrations from an older version."""
    found = _schema_version(conn)
    if found is not None and found > SCHEMA_VERSION:
        raise PruneLabError("the experiment store was upgraded by a newer PruneLab meanwhile; upgrade PruneLab")
    if found is None and conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone() is None:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        return
    version = found or 1
    while version < SCHEMA_VERSION:
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
        version += 1
    for statement in _SCHEMA:  # indexes added since
        conn.execute(statement)
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _insert(conn: sqlite3.Connection, **values: Any) -> None:
    names = [c for c in _COLUMNS if c in values]
    conn.execute(f"INSERT INTO experiments ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [values[n] for n in names])


def _set_done(conn: sqlite3.Connection, exp_id: str, metrics: dict, finished_at: str) -> None:
    """Done with these metrics; finished no earlier than created (a file's mtime may lag the row's clock)."""
    values = numbers(metrics)
    cur = conn.execute(
        f"UPDATE experiments SET status = 'done', metrics_json = ?, finished_at = MAX(?, created_at), error = NULL, "
        f"{', '.join(f'{k} = ?' for k in NUMBERS)} WHERE id = ?",
        (json.dumps(metrics, sort_keys=True), finished_at, *(values[k] for k in NUMBERS), exp_id))
    if cur.rowcount == 0:
        raise _unknown(exp_id)


def _unknown(exp_id: str) -> PruneLabError:
    return PruneLabError(f"no experiment {exp_id!r} (see: prunelab experiments list)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _free_id(conn: sqlite3.Connection, name: str) -> str:
    """An unused id from a folder name: only letters, digits, '.', '_', '-' (never a path), then -2, -3..."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:100] or "run"
    for n in range(1, 100_000):
        candidate = stem if n == 1 else f"{stem}-{n}"
        if conn.execute("SELECT 1 FROM experiments WHERE id = ?", (candidate,)).fetchone() is None:
            return candidate
    raise PruneLabError(f"no free experiment id for {name!r}")


# --- folders -------------------------------------------------------------------------------------------------


def _within(path: Path, root: Path, or_equal: bool = False) -> bool:
    return path.is_relative_to(root) and (or_equal or path != root)


def _owned(folder: Path) -> Path:
    """The folder, resolved, if it lies inside <workspace>/runs; PruneLabError otherwise."""
    resolved, root = folder.resolve(), runs_root()
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

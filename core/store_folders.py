"""What run folders tell the experiment store: whether the metrics.json in a folder is a given row's own, and the
row an unrecorded run folder becomes.

Metrics belong to a row only if they carry its run uid and config hash (core.run_folder). Rows recorded before
run uids existed take only a metrics.json without a uid, written after the row, beside the row's own config:
the older run's metrics.json that a killed run finds in its folder is neither.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import run_folder
from core.config import PruneConfig
from core.errors import PruneLabError


def mtime(path: Path) -> str:
    """A file's modification time in the store's format (ISO 8601, UTC, microseconds)."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="microseconds")


def read_metrics(folder: Path) -> tuple[dict, str] | None:
    """(metrics, mtime) of a folder's metrics.json, or None if it is missing or unreadable."""
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        return (metrics, mtime(path)) if isinstance(metrics, dict) else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def folder_config(folder: Path) -> PruneConfig | None:
    try:
        return PruneConfig.load(folder / "config.json")
    except PruneLabError:
        return None


def own_metrics(row: sqlite3.Row) -> tuple[dict, str] | None:
    """(metrics, mtime) of the metrics.json in a row's folder if the row's own run wrote it, else None."""
    folder = Path(row["folder"])
    found = read_metrics(folder)
    try:
        config = PruneConfig.from_json(row["config_json"])
    except (PruneLabError, TypeError, RecursionError):
        return None
    if found is None:
        return None
    metrics, written = found
    if row["run_uid"]:
        return found if run_folder.belongs(metrics, row["run_uid"], config) else None
    legacy = run_folder.owner(metrics) is None and written >= row["created_at"] and folder_config(folder) == config
    return found if legacy else None


def folder_record(folder: Path) -> tuple[dict[str, Any], dict | None] | None:
    """(row values, metrics) for an unrecorded run folder: done with its metrics if its own run wrote them (the
    metrics then also returned), else interrupted (None). None if it has no readable config.json or a run is
    writing it now (that run records itself)."""
    config = folder_config(folder)
    if config is None or run_folder.in_use(folder):
        return None
    identity = run_folder.read_identity(folder)
    try:
        created = identity.started_at if identity is not None else mtime(folder / "config.json")
    except OSError:
        return None
    record = dict(model=config.model, method=config.method, criterion=config.criterion, config_json=config.to_json(),
                  folder=str(folder), created_at=created, run_uid=None if identity is None else identity.uid)
    found = read_metrics(folder)
    if found is not None and identity is not None:
        found = found if run_folder.belongs(found[0], identity.uid, config) else None
    elif found is not None and (stamp := run_folder.owner(found[0])) is not None:
        found = found if stamp.get("config_sha256") == run_folder.config_sha256(config) else None
    if found is None:
        return record | dict(status="interrupted",
                             error="found without its own metrics.json (the run did not finish)"), None
    metrics, finished = found
    return record | dict(status="done", metrics_json=json.dumps(metrics, sort_keys=True),
                         finished_at=max(finished, created)), metrics


def moved_here(conn: sqlite3.Connection, record: dict[str, Any]) -> bool:
    """If the folder's run uid is already recorded by a row whose folder no longer holds that run, the folder is
    that row's, moved: point the row here (True). A copy of a recorded folder is imported without the uid."""
    uid = record.get("run_uid")
    row = conn.execute("SELECT id, folder FROM experiments WHERE run_uid = ?", (uid,)).fetchone() if uid else None
    if row is None:
        return False
    there = run_folder.read_identity(Path(row["folder"])) if row["folder"] else None
    if there is not None and there.uid == uid:
        record["run_uid"] = None  # a copy: the original keeps the uid
        return False
    conn.execute("UPDATE experiments SET folder = ? WHERE id = ?", (record["folder"], row["id"]))
    return True

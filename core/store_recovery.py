"""Recovering from a damaged experiment store file: move it aside (nothing is deleted) and read back whatever
rows can still be read, for core.store to copy into a fresh store.

SQLite reports a damaged file as SQLITE_NOTADB (not a database at all) or SQLITE_CORRUPT (damaged pages). A
damaged page loses the rows on it; the others are usually reachable by rowid through intact interior pages, so
rows are read one by one when a plain scan stops at the damage.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import PruneLabError

MAX_PROBES = 200_000  # rowids tried one by one at most (about 2 s); stores hold hundreds to thousands of rows


def move_aside(path: Path) -> Path:
    """Rename path (and its -wal and -shm files) to <name>.corrupt-<UTC time>[-n]; returns the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = next(c for n in range(1, 10_000)
                 if not (c := path.with_name(f"{path.name}.corrupt-{stamp}" + ("" if n == 1 else f"-{n}"))).exists())
    try:
        os.rename(path, aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.rename(side, aside.with_name(aside.name + suffix))
    except OSError as e:
        raise PruneLabError(f"the experiment store {path} is damaged and cannot be moved aside: {e.strerror or e}; "
                            "move it away by hand") from None
    return aside


def salvage(path: Path) -> list[dict[str, Any]]:
    """The experiments rows still readable in a damaged store file, in rowid order (an empty list if none)."""
    for query in ("mode=ro", "immutable=1"):  # with its WAL if that can be read, else the main file alone
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True)
        except sqlite3.Error:
            continue
        try:
            conn.row_factory = sqlite3.Row
            rows = _readable_rows(conn)
        finally:
            conn.close()
        if rows:
            return [rows[k] for k in sorted(rows)]
    return []


def _readable_rows(conn: sqlite3.Connection) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    try:
        for r in conn.execute("SELECT rowid AS rowid_, * FROM experiments"):
            rows[r["rowid_"]] = dict(r)
        return rows
    except sqlite3.Error:
        pass  # the scan stopped at a damaged page: try the rest by rowid
    try:
        top = conn.execute("SELECT MAX(rowid) FROM experiments").fetchone()[0] or 0
    except sqlite3.Error:
        return rows
    for rowid in range(1, min(top, MAX_PROBES) + 1):
        if rowid in rows:
            continue
        try:
            row = conn.execute("SELECT * FROM experiments WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None:
            rows[rowid] = dict(row)
    return rows

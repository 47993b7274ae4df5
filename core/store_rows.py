"""Rows of the experiment store as records: an Experiment, or an Unreadable naming why a row cannot be one (a
config of a newer version, damaged metrics JSON, a value of the wrong type), so one bad row never hides the
others.

An Experiment is the one run type: the store returns it and every surface reads it (the CLI's `experiments`,
the Results, Export and Experiments pages). Only the engine's in-memory result (core.experiment.RunOutput: the
pruned model object, its ONNX bytes) is another thing; what it records is this record's config and metrics."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import PruneConfig
from core.errors import PruneLabError
from core.metric_keys import ACCURACY, FLOPS, LATENCY_MS, PARAMS, SIZE_BYTES
from core.workspace import workspace

NUMBERS = (PARAMS, FLOPS, SIZE_BYTES, LATENCY_MS, ACCURACY)  # copied from metrics["pruned"]; column = key


@dataclass(frozen=True)
class Experiment:
    """One recorded run. metrics is its metrics.json (None until the run is done). folder holds its files
    (model.onnx, config.json, metrics.json, deploy.json...); None when they are gone (a later run was recorded in
    the same folder after they were removed; its config and metrics stay here)."""

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

    def file(self, name: str) -> Path | None:
        """One of the run's files (e.g. "model.onnx") if its folder holds it and lies inside <workspace>/runs,
        else None: files are handed out only from there (a record naming another folder, a CLI --out or a
        tampered row, is not followed)."""
        if self.folder is None:
            return None
        folder, root = self.folder.resolve(), runs_root()
        inside = folder != root and folder.is_relative_to(root)
        return folder / name if inside and (folder / name).is_file() else None

    def to_dict(self, metrics: bool = True) -> dict[str, Any]:
        """JSON-ready fields (config as its dict; metrics left out if not wanted, e.g. in a long list)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(config=self.config.to_dict(), folder=None if self.folder is None else str(self.folder))
        if not metrics:
            del data["metrics"]
        return data


@dataclass(frozen=True)
class Unreadable:
    """A row that cannot be read back (a config of a newer version, damaged metrics JSON, a value of the wrong
    type...): its id, why, and its plain columns as text, so a list can name it instead of failing."""

    id: str
    reason: str
    model: str | None
    method: str | None
    status: str | None
    created_at: str | None
    folder: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "method": self.method, "status": self.status,
                "created_at": self.created_at, "folder": self.folder, "unreadable": self.reason}


def runs_root() -> Path:
    """<workspace>/runs, resolved: the only folder whose run files PruneLab deletes, exports or hands out."""
    return (workspace() / "runs").resolve()


class BadRow(Exception):
    """A row that cannot be turned into an Experiment (the message says why)."""


def experiment(row: sqlite3.Row) -> Experiment:
    """The row as an Experiment; BadRow (saying why) if any of its values cannot be one."""
    try:
        config = PruneConfig.from_json(row["config_json"])
    except (PruneLabError, TypeError, RecursionError) as e:
        raise BadRow(f"config: {e}") from None
    metrics = None
    if row["metrics_json"] is not None:
        try:
            metrics = json.loads(row["metrics_json"])
        except (ValueError, TypeError, RecursionError) as e:
            raise BadRow(f"metrics are not readable JSON ({e})") from None
        if not isinstance(metrics, dict):
            raise BadRow("metrics are not a JSON object")
    _check_types(row)
    return Experiment(
        id=row["id"], model=row["model"], method=row["method"], criterion=row["criterion"], status=row["status"],
        parent=row["parent"], config=config, metrics=metrics,
        folder=None if row["folder"] is None else Path(row["folder"]), created_at=row["created_at"],
        finished_at=row["finished_at"], error=row["error"], **{k: row[k] for k in NUMBERS},
        pid=row["pid"], host=row["host"])


def _check_types(row: sqlite3.Row) -> None:
    for key in ("id", "model", "method", "criterion", "status", "created_at"):
        if not isinstance(row[key], str):
            raise BadRow(f"{key} is not text ({row[key]!r})")
    for key in ("parent", "folder", "finished_at", "error", "host"):
        if row[key] is not None and not isinstance(row[key], str):
            raise BadRow(f"{key} is not text ({row[key]!r})")
    for key in NUMBERS:
        value = row[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise BadRow(f"{key} is not a number ({value!r})")
    if row["pid"] is not None and not isinstance(row["pid"], int):
        raise BadRow(f"pid is not a number ({row['pid']!r})")


def unreadable(row: sqlite3.Row, reason: str) -> Unreadable:
    def text(key: str) -> str | None:
        value = row[key]
        return None if value is None else value if isinstance(value, str) else repr(value)

    return Unreadable(id=text("id") or "?", reason=reason, model=text("model"), method=text("method"),
                      status=text("status"), created_at=text("created_at"), folder=text("folder"))


def numbers(metrics: dict) -> dict[str, float | int | None]:
    """The pruned model's headline numbers (metrics["pruned"], or metrics itself if flat); None if absent."""
    pruned = metrics.get("pruned") if isinstance(metrics.get("pruned"), dict) else metrics
    out: dict[str, float | int | None] = {}
    for key in NUMBERS:
        value = pruned.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        out[key] = value if ok else None
    return out

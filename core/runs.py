"""Saved runs: every dashboard experiment is written to the workspace so a refresh or restart loses
nothing. A run is a folder with the same three files the CLI writes (config.json, model.onnx,
metrics.json). The workspace is $PRUNELAB_HOME, or ~/.prunelab by default.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import PruneConfig
from core.errors import PruneLabError


def workspace() -> Path:
    """The folder PruneLab keeps its runs in (created on first use)."""
    root = Path(os.environ.get("PRUNELAB_HOME") or Path.home() / ".prunelab")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class SavedRun:
    """A run folder and what it holds, read back from disk."""

    path: Path
    config: PruneConfig
    metrics: dict

    @property
    def run_id(self) -> str:
        return self.path.name

    def onnx_bytes(self) -> bytes:
        return (self.path / "model.onnx").read_bytes()


def new_run_dir(model: str, method: str) -> Path:
    """A fresh, uniquely named folder for a run: <UTC time>-<model>-<method>[-n]."""
    stem = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{model}-{method}"
    runs = workspace() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = runs / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise PruneLabError(f"cannot create a run folder under {runs}")


def read_run(path: Path) -> SavedRun:
    """Load a run folder; raises PruneLabError if it is incomplete or unreadable."""
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PruneLabError(f"run {path.name} is unreadable: {e}") from None
    return SavedRun(path, PruneConfig.load(path / "config.json"), metrics)


def completed() -> list[Path]:
    """Folders of complete runs, newest first (metrics.json is written last: without it, interrupted)."""
    done = sorted((workspace() / "runs").glob("*/metrics.json"), key=lambda m: m.stat().st_mtime_ns, reverse=True)
    return [m.parent for m in done]


def list_runs(model: str | None = None, folders: list[Path] | None = None) -> list[SavedRun]:
    """Complete runs in the workspace (or in `folders`), newest first; broken folders are skipped."""
    runs = []
    for path in completed() if folders is None else folders:
        try:
            run = read_run(path)
        except PruneLabError:
            continue
        if model is None or run.config.model == model:
            runs.append(run)
    return runs

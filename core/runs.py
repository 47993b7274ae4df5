"""Saved runs: every dashboard experiment is written to the workspace so a refresh or restart loses
nothing. A run is a folder with the same three files the CLI writes (config.json, model.onnx,
metrics.json). The workspace is $PRUNELAB_HOME, or ~/.prunelab by default.

record() also enters a run in the experiment store (core.store: status, parent, numbers) while it happens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
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


def safe_name(text: str, limit: int = 40) -> str:
    """A folder-name-safe version of a model name (a user model's name is a path): letters, digits, dot,
    dash and underscore only, no leading dots, at most `limit` characters — run folders stay in runs/."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[-limit:]
    return cleaned or "model"


def new_run_dir(model: str, method: str) -> Path:
    """A fresh, uniquely named folder for a run: <UTC time>-<model>-<method>[-n]."""
    stem = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{safe_name(model)}-{safe_name(method)}"
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


def _log_warning(message: str) -> None:
    logging.getLogger(__name__).warning(message)


@contextlib.contextmanager
def record(run_dir: Path, config: PruneConfig, parent: str | None = None,
           warn: Callable[[str], None] = _log_warning) -> Iterator[Callable[[dict], None]]:
    """Record the run the block performs in the experiment store: 'running' on entry, 'done' when the block
    calls the yielded finish(metrics) after writing the files, 'failed' (with the error) if it raises,
    'interrupted' on Ctrl+C; a block that ends without calling finish() counts as failed.

        with runs.record(run_dir, config) as finish:
            out = experiment.run(spec, config)
            out.write(run_dir)
            finish(json.loads(out.metrics_json()))

    The store is a record of the files, not a condition for writing them: if it cannot be opened or written,
    warn() says so and the run goes on (a row left 'running' is repaired from the folder by Store.sync).
    """
    from core.store import Store

    store, exp_id, finished = None, None, False
    try:
        store = Store()
        exp_id = store.start(run_dir, config, parent)
    except (PruneLabError, OSError) as e:
        warn(f"not recorded in the experiment store: {e}")

    def mark(step: str, *args: object) -> None:
        """One store update; an error becomes a warning instead of stopping the run."""
        if exp_id is not None:
            try:
                getattr(store, step)(exp_id, *args)
            except (PruneLabError, OSError) as e:
                warn(f"not recorded in the experiment store: {e}")

    def finish(metrics: dict) -> None:
        nonlocal finished
        finished = True
        mark("finish", metrics)

    try:
        yield finish
    except Exception as e:
        mark("fail", str(e) if isinstance(e, PruneLabError) else f"{type(e).__name__}: {e}")
        raise
    except BaseException:
        mark("interrupt")
        raise
    if not finished:
        mark("fail", "the run ended without results")

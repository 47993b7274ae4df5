"""Recording a run: its folder holds its files (config.json, model.onnx, metrics.json: what the CLI writes, so a
refresh or restart loses nothing) and the experiment store holds its record. The workspace is $PRUNELAB_HOME, or
~/.prunelab by default.

record() claims a run's folder (locked while the run writes it, its identity written first: core.run_folder)
and enters the run in the experiment store (core.store: status, parent, numbers) while it happens. Runs are
listed and read back only through the store (core.store.Store.list/get): its record, an Experiment, is the one
run type; a folder is found through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.config import PruneConfig
from core.errors import PruneLabError
from core.run_folder import FolderLock, aside_path, belongs, holds_run, new_identity, read_identity, write_identity
from core.store import Store
from core.workspace import safe_name, workspace


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


def _log_warning(message: str) -> None:
    logging.getLogger(__name__).warning(message)


@contextlib.contextmanager
def record(run_dir: Path, config: PruneConfig, parent: str | None = None,
           warn: Callable[[str], None] = _log_warning, replace: bool = False) -> Iterator[Callable[[dict], None]]:
    """Claim run_dir for the run the block performs and record it in the experiment store: 'running' on entry,
    'done' when the block calls the yielded finish(metrics) after writing the files, 'failed' (with the error)
    if it raises, 'interrupted' on Ctrl+C; a block that ends without calling finish() counts as failed.

        with runs.record(run_dir, config) as finish:
            out = experiment.run(spec, config)
            out.write(run_dir)
            finish(json.loads(out.metrics_json()))

    Claiming (core.run_folder): the folder is locked for the whole block (another run into it is refused at
    once); a folder that already holds a run is refused, naming it, unless replace, which moves that run aside
    to <run_dir>.replaced-<its id> and its record with it; then the run's identity is written, before anything
    else, and config.json. finish() records the metrics.json in the folder only if this run wrote it.

    The store is a record of the files, not a condition for writing them: if it cannot be opened or written,
    warn() says so and the run goes on (a row left 'running' is repaired from the folder by Store.sync). Only
    replacing needs the store: an old run's record must move with its files.
    """
    lock = FolderLock.acquire(run_dir)
    try:
        store = _open_store(warn)
        if holds_run(run_dir):
            lock = _move_aside(run_dir, store, lock, replace)
        claim = _Claim(run_dir, config, store, warn)
        claim.start(parent)
        yield from _outcome(claim)
    finally:
        lock.release()


def _outcome(claim: _Claim) -> Iterator[Callable[[dict], None]]:
    """The recording part of record(): the block's outcome becomes the row's status."""
    try:
        yield claim.finish
    except Exception as e:
        claim.mark("fail", str(e) if isinstance(e, PruneLabError) else f"{type(e).__name__}: {e}")
        raise
    except BaseException:
        claim.mark("interrupt")
        raise
    if not claim.finished:
        claim.mark("fail", "the run ended without results")


class _Claim:
    """One run's hold on its folder and its row: started, then finished, failed or interrupted."""

    def __init__(self, run_dir: Path, config: PruneConfig, store, warn: Callable[[str], None]) -> None:
        self.run_dir, self.config, self.store, self.warn = Path(run_dir), config, store, warn
        self.identity = new_identity(config, None)
        self.exp_id: str | None = None
        self.finished = False

    def start(self, parent: str | None) -> None:
        """The row (running), then the identity, then config.json; a failure to write them fails the run."""
        if self.store is not None:
            try:
                self.exp_id = self.store.start(self.run_dir, self.config, parent, run_uid=self.identity.uid)
            except (PruneLabError, OSError) as e:
                self.warn(f"not recorded in the experiment store: {e}")
        self.identity = dataclasses.replace(self.identity, id=self.exp_id)
        try:
            write_identity(self.run_dir, self.identity)
            self.config.save(self.run_dir / "config.json")
        except OSError as e:
            message = f"cannot write into {self.run_dir}: {e.strerror or e}"
            self.mark("fail", message)
            raise PruneLabError(message) from None

    def mark(self, step: str, *args: object) -> None:
        """One store update; an error becomes a warning instead of stopping the run."""
        if self.exp_id is not None:
            try:
                getattr(self.store, step)(self.exp_id, *args)
            except (PruneLabError, OSError) as e:
                self.warn(f"not recorded in the experiment store: {e}")

    def finish(self, metrics: dict) -> None:
        """Done with the metrics.json this run wrote into its folder (which must equal `metrics`); anything
        else fails the run, naming why."""
        path = self.run_dir / "metrics.json"
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PruneLabError(f"{path} cannot be read back: {e}") from None
        if not belongs(written, self.identity.uid, self.config) or written != metrics:
            raise PruneLabError(f"{path} is not this run's own results (another process wrote it)")
        self.finished = True
        self.mark("finish", written)


def _open_store(warn: Callable[[str], None]):
    """The experiment store, or None (warned) if it cannot be opened; its own notices become warnings."""
    try:
        store = Store()
    except (PruneLabError, OSError) as e:
        warn(f"not recorded in the experiment store: {e}")
        return None
    if store.notice:
        warn(store.notice)
    if store.read_only:
        warn(f"not recorded in the experiment store {store.path}: it cannot be written ({store.read_only})")
        return None
    return store


def occupant(folder: Path, store=None) -> tuple[str, str, dict | None]:
    """(name, status, store row or None) of the run whose files are in folder: the row with the folder's run uid,
    else the row pointing at the folder if no other run's identity is there, else what the identity says."""
    identity = read_identity(folder)
    row = None
    if store is not None:
        try:
            row = store.occupant(folder, None if identity is None else identity.uid)
        except (PruneLabError, OSError):
            row = None
    if row is not None and identity is not None and row["run_uid"] != identity.uid:
        row = None  # that record lost this folder to the run named by the identity
    if row is not None:
        return row["id"], row["status"], row
    if identity is not None:
        return identity.id or identity.uid[:8], "not recorded", None
    return "an unrecorded run", "not recorded", None


def _move_aside(run_dir: Path, store, lock, replace: bool):
    """Refuse a folder that holds a run, or (replace) move that run aside with its record; returns the lock on
    the (new, empty) run_dir. Order: the record first, then the files: if killed in between, Store.sync finds the
    files still in run_dir by their identity and points the record back (see Store._restore)."""
    name, status, row = occupant(run_dir, store)
    aside = aside_path(run_dir, name.replace(" ", "-"))
    if not replace:
        raise PruneLabError(f"{run_dir} already holds run {name} ({status}); choose another folder, or add --force "
                            f"to move it aside to {aside.name} and run here")
    if row is not None:
        uid = store.give_uid(row["id"])  # a run recorded before uids gets one, written into its folder first
        identity = read_identity(run_dir)
        if identity is None or identity.uid != uid:
            write_identity(run_dir, new_identity(None, row["id"], uid=uid, this_process=False))
        store.relocate(row["id"], aside)
    elif store is None:
        raise PruneLabError(f"{run_dir} holds run {name}, and the experiment store cannot be updated to follow it "
                            "if it is moved aside; choose another folder")
    try:
        os.rename(run_dir, aside)
    except OSError as e:
        if row is not None:
            store.relocate(row["id"], run_dir)
        raise PruneLabError(f"cannot move the run in {run_dir} aside to {aside}: {e.strerror or e}") from None
    lock.release()
    return FolderLock.acquire(run_dir)

"""Where a command's results go, checked before any slow work: an output file (a CSV, a config) or a run folder
(free space, not in use, not holding another run unless it may be moved aside), and where a config file comes from
(the recorded run whose folder holds it). core.runs.record checks the folder again under its lock: this is the
early answer, so a user learns of a bad --out before the model loads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from core.errors import PruneLabError
from core.run_folder import aside_path, holder, holds_run, in_use
from core.runs import occupant
from core.store import Store

MIN_FREE_BYTES = 1 << 20  # a run with less free space in its folder's disk (1 MiB) is refused before it starts


def check_out_file(text: str, option: str = "--out") -> Path:
    """A file to write: not a directory, in a directory that exists and is writable."""
    path = Path(text)
    if path.is_dir():
        raise PruneLabError(f"{option} {text} is a directory; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise PruneLabError(f"{option} {text}: {parent} is not a writable directory")
    return path


def check_run_folder(text: str, force: bool = False, option: str = "--out") -> Path:
    """A run's folder: one we can write into or create, with room on its disk, not in use by another run, and not
    holding a run unless force (the run then moves that one aside when it starts). Not created here."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise PruneLabError(f"{option} {text} exists and is not a directory")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise PruneLabError(f"{option} {text}: {existing} is not a writable directory")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:  # a full disk is known now, not after the work
        raise PruneLabError(f"{option} {text}: only {free:,} bytes free on the disk of {existing.absolute()}; a run "
                            f"writes its model, config and metrics there (free at least {MIN_FREE_BYTES:,} bytes)")
    if in_use(path):
        raise PruneLabError(f"{option} {path.absolute()} is in use by {holder(path)}; wait for it to end or choose "
                            "another folder")
    if holds_run(path) and not force:
        name, status = _occupant(path)
        raise PruneLabError(f"{option} {path.absolute()} already holds run {name} ({status}); choose another folder, "
                            f"or add --force to move it aside to {aside_path(path, name.replace(' ', '-')).name} "
                            "and run here")
    return path


def _occupant(path: Path) -> tuple[str, str]:
    """(id, status) of the run in a folder, for messages; the store is only read."""
    try:
        store = Store()
    except (PruneLabError, OSError):
        store = None
    name, status, _ = occupant(path, store)
    return name, status


def parent_run(config_file: Path, warn: Callable[[str], None]) -> str | None:
    """The recorded experiment a config file comes from: the one whose run folder holds it as config.json."""
    if config_file.name != "config.json":
        return None
    try:
        return Store().id_for_folder(config_file.parent)
    except (PruneLabError, OSError) as e:
        warn(f"cannot look up the config's run in the experiment store: {e}")
        return None

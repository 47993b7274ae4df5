"""A run folder's identity and ownership: which run wrote what is in it, whether a run is writing it now, and
where an old run goes when a new one replaces it.

Why: a record must only ever hold what its own run produced. A run killed in a folder that held an earlier run
must never be "completed" with the earlier run's metrics.json. So a run writes its identity first, before any
other file: IDENTITY holds a random uid, its store id, its config's hash and its process. metrics.json carries
the same uid and config hash (its "run" entry); metrics belong to a run only if both match. While a run writes a
folder it holds an exclusive flock on the folder itself, which the kernel releases however the process ends:
two runs never write one folder at once, and the second is told so at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import PruneConfig
from core.errors import PruneLabError
from core.files import write_atomic
from core.processes import alive, process_start

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are then not locked (documented in FolderLock)
    fcntl = None

IDENTITY = ".prunelab-run.json"  # hidden: the three files a user shares stay config.json, model.onnx, metrics.json
RUN_FILES = ("config.json", "model.onnx", "metrics.json")  # metrics.json last: a folder that has it is complete
WEIGHTS_FILE = "model.safetensors"  # the pruned module's weights (core.export_formats), written before
# metrics.json; not in RUN_FILES: runs recorded before it have none
INT8_FILE = "model.int8.onnx"  # the pruned model quantised after the last stage (a config's quantize="int8")
# what a re-export copies and offers, in this order: those present
HANDED_OUT = (*RUN_FILES[:-1], INT8_FILE, WEIGHTS_FILE, RUN_FILES[-1])
REPLACED = ".replaced-"  # an old run moved aside by --force: <folder>.replaced-<its id>
GRACE_S = 0.2  # how long taking a folder's lock waits out a probe before calling the folder busy


@dataclass(frozen=True)
class Identity:
    """Who started the run in a folder. uid is random (never reused); id is its store id (None if the store
    could not record it); pid/host/proc_start tell whether its process still runs (None for an identity given
    afterwards to a folder written before identities existed)."""

    uid: str
    id: str | None
    config_sha256: str | None
    started_at: str
    pid: int | None = None
    host: str | None = None
    proc_start: str | None = None

    def stamp(self) -> dict[str, str | None]:
        """The "run" entry of this run's metrics.json."""
        return {"uid": self.uid, "config_sha256": self.config_sha256}

    def alive(self) -> bool:
        """Whether the process that wrote this identity still runs on this host."""
        return self.pid is not None and self.host == socket.gethostname() and alive(self.pid, self.proc_start)


def config_sha256(config: PruneConfig) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()


def new_identity(config: PruneConfig | None, exp_id: str | None, uid: str | None = None,
                 started_at: str | None = None, this_process: bool = True) -> Identity:
    pid = os.getpid() if this_process else None
    return Identity(uid=uid or uuid.uuid4().hex, id=exp_id,
                    config_sha256=None if config is None else config_sha256(config),
                    started_at=started_at or datetime.now(UTC).isoformat(timespec="microseconds"), pid=pid,
                    host=socket.gethostname() if this_process else None,
                    proc_start=process_start(pid) if pid is not None else None)


def read_identity(folder: Path) -> Identity | None:
    """The folder's identity, or None if it has none or it cannot be read (then nothing in it is trusted as a
    recorded run's own)."""
    try:
        data = json.loads((Path(folder) / IDENTITY).read_text(encoding="utf-8"))
        identity = Identity(**data)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError):
        return None
    ok = isinstance(identity.uid, str) and identity.uid and isinstance(identity.started_at, str)
    return identity if ok else None


def write_identity(folder: Path, identity: Identity) -> None:
    write_atomic(Path(folder) / IDENTITY, (json.dumps(asdict(identity), indent=2, sort_keys=True) + "\n").encode())


def owner(metrics: Any) -> dict[str, Any] | None:
    """The "run" entry of a metrics dict (which run wrote it), or None for metrics written without one."""
    stamp = metrics.get("run") if isinstance(metrics, dict) else None
    return stamp if isinstance(stamp, dict) and isinstance(stamp.get("uid"), str) else None


def belongs(metrics: Any, uid: str, config: PruneConfig) -> bool:
    """Whether these metrics were written by run uid with this config."""
    stamp = owner(metrics)
    return stamp is not None and stamp["uid"] == uid and stamp.get("config_sha256") == config_sha256(config)


def holds_run(folder: Path) -> bool:
    """Whether a run was started or written here (its identity or any of its files)."""
    folder = Path(folder)
    return any((folder / name).exists() for name in (IDENTITY, *RUN_FILES))


def aside_path(folder: Path, name: str) -> Path:
    """Where an old run in folder is moved: a sibling <folder>.replaced-<name>[-n] that does not exist yet."""
    folder = Path(folder)
    for n in range(1, 1000):
        candidate = folder.with_name(f"{folder.name}{REPLACED}{name}" + ("" if n == 1 else f"-{n}"))
        if not candidate.exists():
            return candidate
    raise PruneLabError(f"no free name beside {folder} to move its run to")


def replaced_original(folder: Path) -> Path | None:
    """The folder a moved-aside run came from (<folder>.replaced-<id> -> <folder>), or None."""
    name, sep, _ = Path(folder).name.rpartition(REPLACED)
    return Path(folder).with_name(name) if sep and name else None


class FolderBusy(PruneLabError):
    """Another run holds the folder."""


class FolderLock:
    """An exclusive flock on a run folder, held while a run writes it (see the module docstring). The folder
    itself is locked, not a file in it: the lock moves with the folder if it is renamed, so after locking we
    check the path still names the locked folder."""

    def __init__(self, folder: Path, fd: int | None) -> None:
        self.folder, self._fd = Path(folder), fd

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Lock folder (created if missing); FolderBusy if another run holds it, PruneLabError if it cannot be
        created."""
        folder = Path(folder)
        for _ in range(10):  # the folder renamed between opening and locking it: lock the new one
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError as e:
                raise PruneLabError(f"cannot create the run folder {folder}: {e.strerror or e}") from None
            lock = cls(folder, fd)
            if not lock._lock():
                lock.release()
                raise FolderBusy(f"{folder} is in use by {holder(folder)}; wait for it to end or choose another "
                                 "folder")
            if lock._still_there():
                return lock
            lock.release()
        raise PruneLabError(f"{folder} keeps being moved while PruneLab tries to use it")

    def _lock(self) -> bool:
        """Take the lock, waiting up to GRACE_S: a probe (in_use) holds it for microseconds, a run for its
        whole length."""
        if fcntl is None:
            return True
        deadline = time.monotonic() + GRACE_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            except OSError as e:  # a filesystem without locks: the folder is used unlocked rather than refused
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                return True

    def _still_there(self) -> bool:
        try:
            now, held = os.stat(self.folder), os.fstat(self._fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None


def in_use(folder: Path) -> bool:
    """Whether a run holds folder's lock now (probed by taking it for an instant; a missing folder is free)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def holder(folder: Path) -> str:
    """Words for the run that holds folder, from its identity if it has written one yet."""
    identity = read_identity(folder)
    if identity is None or not identity.alive():
        return "another PruneLab run"
    return f"run {identity.id or identity.uid[:8]} (running, process {identity.pid})"


@contextlib.contextmanager
def exclusive(lock_file: Path):
    """Hold an exclusive flock on lock_file (created if missing) for the block; waits for other holders. Used
    where processes must take turns for a moment (moving a damaged store aside)."""
    if fcntl is None:
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

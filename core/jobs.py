"""Long work (a sensitivity sweep, a run, a deployment, timing tables) in a process of its own.

A page that starts work in a thread of the Streamlit server shares the server's GIL with every rerun and
poll: on a 2-core machine a sweep so watched ran ~80x slower than from the CLI. A job therefore runs as
`python -m core.job_worker FOLDER`, a separate process in its own session (cancellable as a group), and
talks to its watchers only through small files in its folder:

- `pid.json`       the worker's pid and /proc start time (written by the server as it starts the worker)
- `request.json`   task, model, who started it and when, and its settings (the arguments that are dataclasses,
                   as JSON: what a refresh restores); written last: a job is visible once it is whole
- `progress.json`  stage, done, total (rewritten atomically, a few times a second)
- `outcome.json`   the result (JSON) or the error, written once at the end
- `cancelled`      present when a user cancelled it

The task's arguments go to the worker through its stdin as a pickle written by this process (never a file
another program could swap). A job lives in a *slot* (`jobs/<task>/<model>/<key>`): one per task and model, or
per task, model and request (`key`, e.g. a run's config hash) where different requests may run side by side. A
refresh, a second tab or a second click finds the running job there instead of starting a duplicate.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch

from core import processes
from core.errors import PruneLabError
from core.files import write_atomic
from core.workspace import safe_name, workspace

KILL_AFTER_S = 5.0  # a cancelled worker that has not exited this long after SIGTERM is killed
# OpenMP threads that sleep instead of spinning while they wait: beside a browser and a server on 2 cores, torch's
# two spinning threads made a sweep several times slower (bench/omp_wait.py, docs/benchmarks.md)
PASSIVE = "PASSIVE"
PROGRESS_EVERY_S = 0.25  # at most 4 progress writes a second: watchers poll about once a second


@dataclass(frozen=True)
class ModelRef:
    """What loads a job's model in the worker: a registry name, or a user's model (the arguments the user gave
    the sidebar form; `name` is then its dashboard handle, which the loaded spec is renamed to)."""

    name: str
    ref: str | None = None
    weights: str | None = None
    data: str | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class JobStatus:
    """A job as its watchers see it. state: starting, running, done, failed, cancelled or lost."""

    folder: Path
    job_id: str
    task: str
    state: str
    stage: str
    done: int
    total: int
    started: float  # time.time() when requested
    result: Any = None
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # argument name -> its fields (the dataclass ones)

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / max(self.total, 1))

    def seconds_left(self, now: float | None = None) -> float | None:
        """Time left at the job's rate so far (None until a first step is done). Measured from the job's start:
        a run reports one fraction of the whole run across its stages (core.run_progress)."""
        if not self.active or self.done <= 0 or self.total <= self.done:
            return None
        spent = (now or time.time()) - self.started
        return spent / self.done * (self.total - self.done)


def slot(task: str, model: str, key: str = "") -> Path:
    """The folder of the job running `task` for `model` (and request `key`): one job at a time there."""
    return workspace() / "jobs" / safe_name(task) / safe_name(model, 80) / (safe_name(key) if key else "_")


def latest(task: str, model: str) -> JobStatus | None:
    """The most recently started job of `task` for `model`, whatever its key (what a refresh shows)."""
    found = [s for s in map(status, (slot(task, model).parent).glob("*")) if s is not None]
    return max(found, key=lambda s: s.started, default=None)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status(folder: Path) -> JobStatus | None:
    """The job in folder, or None if none was ever started there."""
    request = _read_json(folder / "request.json")
    if request is None:
        return None
    progress = _read_json(folder / "progress.json") or {}
    outcome = _read_json(folder / "outcome.json")
    state = _state(folder, request, outcome)
    error = outcome.get("error") if outcome else None
    if state == "lost":
        error = f"the job stopped without finishing{_last_words(folder)}; start it again"
    elif state == "cancelled":
        error = "cancelled"
    return JobStatus(folder, str(request.get("job_id")), str(request.get("task")), state,
                     str(progress.get("stage", "starting")), int(progress.get("done", 0)),
                     int(progress.get("total", 1)), float(request.get("created", 0.0)),
                     outcome.get("result") if outcome else None, error, _dict(request.get("settings")))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job's dataclass arguments as JSON-able dicts (e.g. a sweep's SweepSpec): what a new session of the
    page that started it restores, so a refresh shows the job's own settings."""
    return {name: asdict(v) for name, v in kwargs.items() if is_dataclass(v) and not isinstance(v, type)}


def _state(folder: Path, request: dict, outcome: dict | None) -> str:
    if outcome is not None:
        return "failed" if outcome.get("error") else "done"
    if (folder / "cancelled").exists():
        return "cancelled"
    pid = _read_json(folder / "pid.json")
    if pid is None or not processes.alive(int(pid["pid"]), pid.get("started")):
        return "lost"
    return "running" if (folder / "progress.json").exists() else "starting"


def _last_words(folder: Path) -> str:
    """The last line the worker printed (an import error, an out-of-memory kill says nothing), or a guess."""
    try:
        lines = [line for line in (folder / "log.txt").read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return f" ({lines[-1].strip()[:300]})" if lines else " (was its process killed?)"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the slot's lock: two clicks (or tabs) cannot both start a job in it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start(folder: Path, task: str, model: ModelRef, kwargs: dict[str, Any]) -> JobStatus:
    """Start task(model, **kwargs) in a worker process in `folder`, unless a job is already active there:
    then return that one (no duplicate). kwargs must pickle; the result must be JSON."""
    with _locked(folder):
        current = status(folder)
        if current is not None and current.active:
            return current
        try:
            # same torch threads as here; this pid, so the worker ends with this process
            payload = pickle.dumps((task, model, kwargs, torch.get_num_threads(), os.getpid()))
        except Exception as e:  # a programming error: name it instead of starting a job that cannot run
            raise PruneLabError(f"internal error: the {task} job's arguments cannot go to a worker ({e})") from None
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        job_id = f"{int(time.time() * 1000):x}-{os.getpid()}"
        request = {"job_id": job_id, "task": task, "model": model.name, "created": time.time(),
                   "server_pid": os.getpid(), "settings": _settings(kwargs)}
        pid = _spawn(folder, payload)
        write_atomic(folder / "pid.json", json.dumps({"pid": pid, "started": processes.process_start(pid)}).encode())
        write_atomic(folder / "request.json", json.dumps(request, default=str).encode())  # a Path setting: its text
        return status(folder)  # type: ignore[return-value]  # request.json was just written


def _spawn(folder: Path, payload: bytes) -> int:
    """Run the worker in its own session (so cancel can end it with everything it started); its output goes to
    log.txt. A thread of this process waits for it, so it never lingers as a zombie."""
    env = {**os.environ}
    env.setdefault("OMP_WAIT_POLICY", PASSIVE)
    with open(folder / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core.job_worker", str(folder)], stdin=subprocess.PIPE,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    assert proc.stdin is not None
    proc.stdin.write(payload)
    proc.stdin.close()
    threading.Thread(target=proc.wait, name="prunelab-job-reaper", daemon=True).start()
    return proc.pid


def cancel(folder: Path) -> None:
    """Stop the job in folder (its whole process group) and mark it cancelled; a finished job is left as is."""
    with _locked(folder):
        current = status(folder)
        if current is None or not current.active:
            return
        (folder / "cancelled").touch()
        pid = _read_json(folder / "pid.json")
        if pid and processes.alive(int(pid["pid"]), pid.get("started")):
            _signal_group(int(pid["pid"]), signal.SIGTERM)  # the worker unwinds: a run's record says why
            threading.Timer(KILL_AFTER_S, _kill_if_alive, (int(pid["pid"]), pid.get("started"))).start()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_if_alive(pid: int, started: str | None) -> None:
    if processes.alive(pid, started):
        _signal_group(pid, signal.SIGKILL)


class Reporter:
    """The worker's side: writes progress.json (throttled) and outcome.json."""

    def __init__(self, folder: Path):
        self.folder, self._last, self._stage = folder, 0.0, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.time()
        if stage != self._stage:  # a new stage is always written at once
            self._stage, self._last = stage, 0.0
        if now - self._last < PROGRESS_EVERY_S and 0 < done < total:
            return
        self._last = now
        data = {"stage": stage, "done": done, "total": total}
        write_atomic(self.folder / "progress.json", json.dumps(data).encode())

    def finish(self, result: Any = None, error: str | None = None) -> None:
        try:
            text = json.dumps({"result": result, "error": error})
        except TypeError as e:  # a task returned something JSON cannot hold: a bug, say so
            text = json.dumps({"result": None, "error": f"internal error: the job's result is not JSON ({e})"})
        write_atomic(self.folder / "outcome.json", text.encode())


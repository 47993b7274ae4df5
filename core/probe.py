"""Check-load a user's model in a separate process, with a time and a memory limit, before the server loads it.

A factory (file.py:build) is the user's own code: it may never return, or allocate until the machine runs out
of memory, and Python cannot stop a thread — but it can kill a process. So the dashboard first has the model
loaded by `python -m core.probe`, a child process that
- ends itself at the time limit (SIGALRM, whose default action ends a process whatever it is running), and is
  killed by its parent at the same limit, on Cancel, and when the session that asked for it has ended;
- dies with the server (prctl PR_SET_PDEATHSIG: a server killed with SIGKILL leaves nothing behind);
- leads its own process group, so whatever the factory started is killed with it;
- may add at most LOAD_MEMORY to its address space (RLIMIT_AS), counted from after torch is imported;
and writes whether the model loaded (its summary) or why not (one line) to a small JSON file. Only a model that
loaded there is then loaded in the server — a second time, since a module defined by the user's file and its
data loaders cannot be moved between processes.

The child is started, watched and reaped by one thread per Probe, which lives as long as the child: the kernel's
parent-death signal follows the thread that started a process, so it must not be a script run's thread, which
ends at the next rerun. Waiting sleeps on the child's pidfd (no polling loop).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import PruneLabError
from core.files import write_atomic
from core.limits import LOAD_MEMORY, LOAD_TIMEOUT
from core.models import load

ROOT = Path(__file__).resolve().parents[1]  # on the child's PYTHONPATH: the server may run from any folder
SESSION_GRACE_S = 5.0  # seconds a session may look gone (a reconnecting browser) before its load is stopped
WATCH_EVERY_S = 1.0  # seconds between the watcher's checks of the session (it wakes at once when the child ends)
OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "out of memory")


@dataclass(frozen=True)
class Outcome:
    """How a check-load ended: ok with the model's summary, or not with one line saying why."""

    ok: bool
    message: str


class Probe:
    """A check-load of `ref` (with weights, data, trust as core.models.load takes them) running in a child
    process from construction on. `alive()`, if given, says whether the session that asked still exists; the
    load is stopped once it has said no for `grace` seconds."""

    def __init__(self, ref: str, weights: str | None = None, data: str | None = None, trust_pickle: bool = False,
                 alive: Callable[[], bool] | None = None, grace: float = SESSION_GRACE_S) -> None:
        self.ref, self.timeout = ref, LOAD_TIMEOUT.value()  # seconds
        self.started = time.monotonic()
        self._deadline = self.started + self.timeout
        self._dir = Path(tempfile.mkdtemp(prefix="prunelab-probe-"))
        self._request = {"ref": ref, "weights": weights, "data": data, "trust_pickle": trust_pickle,
                         "parent": os.getpid(), "timeout": self.timeout, "memory": LOAD_MEMORY.value(),
                         "result": str(self._dir / "result.json")}
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None
        self._proc: subprocess.Popen | None = None
        self._pidfd: int | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready, alive, grace), name=f"prunelab-probe-{ref[-40:]}",
                         daemon=True).start()
        ready.wait()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def poll(self) -> Outcome | None:
        """The outcome once the load has ended (None while it runs); kills it when its time is up."""
        with self._lock:
            if self._outcome is None and self._proc is not None:
                status = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if status is not None:  # ended; not yet reaped, so its pid (= group id) is still ours
                    self._end(self._reported(status))
                elif time.monotonic() >= self._deadline:
                    self._end(Outcome(False, self._late()))
            return self._outcome

    def wait(self, seconds: float) -> Outcome | None:
        """poll(), waiting up to `seconds` for the load to end (asleep on the child's pidfd meanwhile)."""
        end = time.monotonic() + seconds
        while (outcome := self.poll()) is None and (left := end - time.monotonic()) > 0:
            self._sleep(min(left, max(self._deadline - time.monotonic(), 0.0)))
        return outcome

    def cancel(self) -> None:
        """Stop the load now (the user pressed Cancel)."""
        self.stop(f"loading {self.ref} was cancelled; nothing was loaded")

    def stop(self, message: str) -> None:
        """Kill the load, and what it started, unless it has already ended; `message` becomes its outcome."""
        with self._lock:
            if self._outcome is None:
                self._end(Outcome(False, message))

    # --- parent side, internals ----------------------------------------------------------------------------

    def _run(self, ready: threading.Event, alive: Callable[[], bool] | None, grace: float) -> None:
        """The watcher thread: start the child, then wake on its end or every WATCH_EVERY_S until it ends."""
        try:
            self._start()
        except OSError as e:
            self._outcome = Outcome(False, f"cannot start a process to load {self.ref}: {e}")
        finally:
            ready.set()
        gone_since: float | None = None
        while self.wait(WATCH_EVERY_S) is None:
            if alive is None or _safely(alive):
                gone_since = None
                continue
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since >= grace:
                self.stop(f"loading {self.ref} was stopped: the session that asked for it has ended")

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with (self._dir / "output.txt").open("wb") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "core.probe", json.dumps(self._request)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=env)
        with contextlib.suppress(AttributeError, OSError):  # no pidfd (not Linux >= 5.3): _sleep naps instead
            fd = os.pidfd_open(self._proc.pid)
            self._pidfd = fd
            weakref.finalize(self, os.close, fd)

    def _sleep(self, seconds: float) -> None:
        if self._pidfd is None:
            time.sleep(min(seconds, 0.2))
            return
        with contextlib.suppress(OSError, ValueError):
            select.select([self._pidfd], [], [], seconds)

    def _end(self, outcome: Outcome) -> None:
        """Kill the child's process group, reap the child, remove its folder, record the outcome (lock held)."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._outcome = outcome

    def _reported(self, status: os.waitid_result) -> Outcome:
        """What the ended child wrote, or what its exit says."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            found = json.loads((self._dir / "result.json").read_text(encoding="utf-8"))
            return Outcome(bool(found["ok"]), str(found["message"]))
        if status.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            if status.si_status == signal.SIGALRM:
                return Outcome(False, self._late())
            name = signal.Signals(status.si_status).name
            why = f"was killed by {name}" + (" (out of memory?)" if status.si_status == signal.SIGKILL else "")
        else:
            why = f"ended with exit code {status.si_status} without a result"
        tail = _last_line(self._dir / "output.txt")
        return Outcome(False, f"loading {self.ref} {why}" + (f"; its last output: {tail}" if tail else ""))

    def _late(self) -> str:
        return (f"loading {self.ref} took longer than the time limit of {LOAD_TIMEOUT.show(self.timeout)} and was "
                f"stopped (set {LOAD_TIMEOUT.env} to raise it)")


def _safely(alive: Callable[[], bool]) -> bool:
    """alive(), counting a failure to tell as alive (the time limit still applies)."""
    try:
        return bool(alive())
    except Exception:
        return True


def _last_line(path: Path) -> str:
    """The last non-blank line of a file's last 4 KB, at most 200 characters."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


# --- child side --------------------------------------------------------------------------------------------

def _die_with(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent's watcher thread (and so the server) ends."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def _cap_memory(budget: int) -> None:
    """Limit the address space to what it is now (Python, torch, core) plus budget bytes."""
    import resource

    size = next((int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                 if line.startswith("VmSize:")), 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + budget if hard == resource.RLIM_INFINITY else min(size + budget, hard)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _load(request: dict) -> dict:
    """Load the model as the server would; {"ok", "message"} with its summary or the one-line reason."""
    ref = request["ref"]
    try:
        spec = load(ref, weights=request["weights"], trust_pickle=request["trust_pickle"], data=request["data"])
        return {"ok": True, "message": spec.summary}
    except PruneLabError as e:
        text = str(e)
    except Exception as e:  # a bug in the user's code that core did not wrap
        lines = str(e).strip().splitlines()
        text = f"loading {ref} failed: {type(e).__name__}" + (f": {lines[0][:300]}" if lines else "")
    if any(sign in text for sign in OUT_OF_MEMORY):
        text = (f"loading {ref} needed more memory than the limit of {LOAD_MEMORY.show(request['memory'])} (set "
                f"{LOAD_MEMORY.env} to raise it): {text}")
    return {"ok": False, "message": text}


def main(argv: list[str]) -> None:
    request = json.loads(argv[0])
    _die_with(request["parent"])
    signal.alarm(int(request["timeout"]))  # ends this process at the time limit, whoever is watching
    _cap_memory(int(request["memory"]))  # after torch and core were imported (above): the same in every load
    result = _load(request)
    write_atomic(Path(request["result"]), json.dumps(result).encode("utf-8"))
    sys.stdout.flush()
    os._exit(0)  # at once: threads the user's code started must not keep the process alive


if __name__ == "__main__":
    main(sys.argv[1:])

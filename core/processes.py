"""Whether a process that started a run still runs: its pid plus its start time from /proc, so a reused pid is
told apart from the process that wrote a record."""

from __future__ import annotations

import os
from pathlib import Path


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (after the command name), or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot): with the pid, it tells a reused pid apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def alive(pid: int, started: str | None) -> bool:
    """Whether process pid (started at `started`, if known) still runs on this host; zombies are dead."""
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] != "Z" and (started is None or process_start(pid) == started)
    if os.name == "nt":
        return True  # cannot tell without /proc (os.kill would terminate it): assume alive
    if Path("/proc/self/stat").exists():
        return False  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""One trial of a batch and what it gave: `Outcome`, and `attempt`, which runs a trial where it stands (in the
driver for the local executor, on a worker for Ray).

Its own module so that core.executors (which picks an executor, Ray's among them) and core.executors_ray (which
runs `attempt` on its workers) both import it without importing each other.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import PruneLabError


@dataclass(frozen=True)
class Outcome:
    """What one trial gave: its value, or the message it failed with; where it ran and in how many attempts."""

    key: str
    value: Any = None
    error: str | None = None  # the trial's own failure (PruneLabError text); None when it succeeded
    where: str = ""  # "host pid N": where the figures were measured, for the report
    attempts: int = 1  # more than 1 when a lost worker's trial was retried
    cancelled: bool = False  # never started (or stopped) because the batch was cancelled

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


OnDone = Callable[[Outcome, int, int], None]  # (outcome, finished so far, total)


def here() -> str:
    """This process's place, as outcomes record it."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def attempt(fn: Callable[[Any], Any], key: str, argument: Any) -> Outcome:
    """Run one trial here; its own failure becomes the outcome's message (shared by every executor's worker)."""
    try:
        return Outcome(key, value=fn(argument), where=here())
    except PruneLabError as e:
        return Outcome(key, error=str(e), where=here())

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
from core.threads import torch_threads


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


TRIAL_THREADS = 1  # torch threads of every trial, wherever it runs: see attempt()


def attempt(fn: Callable[[Any], Any], key: str, argument: Any) -> Outcome:
    """Run one trial here; its own failure becomes the outcome's message (shared by every executor's worker).

    torch runs it on TRIAL_THREADS threads, in the driver as on any worker, then goes back to what it had: a
    fine-tune's weights differ in their last bits between thread counts (mnist-resnet, one epoch: 1 and 2 threads
    give different weights), so a trial's figures would otherwise depend on the executor and the worker's cores."""
    with torch_threads(TRIAL_THREADS):
        try:
            return Outcome(key, value=fn(argument), where=here())
        except PruneLabError as e:
            return Outcome(key, error=str(e), where=here())

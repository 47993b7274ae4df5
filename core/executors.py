"""Executors: run a batch of independent trials (a sweep's units, a search's configurations) and hand back one
outcome per trial, in the order given.

A trial is `fn(argument)` where `fn` is a module-level function (so it pickles by name) and the argument is
plain data. The local executor runs the trials one after another in this process (today's behaviour, nothing to
install); the Ray executor (`core.executors_ray`, the optional extra `prunelab[ray]`) sends them to a cluster's
workers. Both report each finished trial to `on_done` in the driver as it lands (progress, the store) and poll
`cancelled` between trials, so a cancelled batch keeps what already finished.

A trial that fails for its own reasons (a `PruneLabError`: e.g. a configuration the model cannot take) becomes an
outcome with its message, and the batch goes on; the caller decides whether that is fatal (a sweep) or a
recorded failure (a search). Any other exception is a bug and propagates.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import PruneLabError

NAMES = ("local", "ray")  # what `--executor` accepts; the CLI and the dashboard read this


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


class Executor(Protocol):
    """Runs trials; see the module docstring for the contract."""

    name: str

    def run(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], *, on_done: OnDone | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[Outcome]:
        """One outcome per (key, argument) of items, in that order."""
        ...


def here() -> str:
    """This process's place, as outcomes record it."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def attempt(fn: Callable[[Any], Any], key: str, argument: Any) -> Outcome:
    """Run one trial here; its own failure becomes the outcome's message (shared by every executor's worker)."""
    try:
        return Outcome(key, value=fn(argument), where=here())
    except PruneLabError as e:
        return Outcome(key, error=str(e), where=here())


class LocalExecutor:
    """The trials one after another in this process: the default."""

    name = "local"

    def run(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], *, on_done: OnDone | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for key, argument in items:
            if cancelled is not None and cancelled():
                outcomes.append(Outcome(key, cancelled=True))
                continue
            outcomes.append(attempt(fn, key, argument))
            if on_done is not None:
                on_done(outcomes[-1], sum(not o.cancelled for o in outcomes), len(items))
        return outcomes

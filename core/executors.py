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

Big inputs that every trial needs (a model, its data) go through `share(value)`: the local executor hands out the
object itself, Ray puts it in the cluster's object store once; the trial's argument carries the handle and the
trial calls `get()` where it runs. `get(name, address, workers)` picks an executor by the name `--executor` takes;
`close()` shuts down a Ray cluster the executor started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import PruneLabError
from core.executors_ray import RayExecutor, ray_missing
from core.trial import OnDone, Outcome, attempt, here

__all__ = ["NAMES", "Executor", "Held", "LocalExecutor", "OnDone", "Outcome", "Shared", "attempt", "get", "here"]

NAMES = ("local", "ray")  # what `--executor` accepts; the CLI and the dashboard read this


class Shared(Protocol):
    """A big input (a model, its data) handed to every trial of a batch without copying it per trial: the trial's
    argument carries the handle and the trial calls get() where it runs."""

    def get(self) -> Any: ...


@dataclass(frozen=True)
class Held:
    """The local executor's Shared: the object itself (the trials run in this process)."""

    value: Any

    def get(self) -> Any:
        return self.value


class Executor(Protocol):
    """Runs trials; see the module docstring for the contract."""

    name: str

    def run(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], *, on_done: OnDone | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[Outcome]:
        """One outcome per (key, argument) of items, in that order."""
        ...

    def share(self, value: Any) -> Shared:
        """A handle to value that trials can get() where they run (sent to the workers once)."""
        ...

    def close(self) -> None:
        """Release what the executor started (a local Ray cluster); joining a cluster leaves it running."""
        ...


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

    def share(self, value: Any) -> Shared:
        return Held(value)

    def close(self) -> None:
        pass  # nothing was started


def get(name: str, address: str | None = None, workers: int | None = None) -> Executor:
    """The executor called `name` (one of NAMES). Ray joins `address` (else $RAY_ADDRESS) or starts a local cluster
    of `workers` worker processes (default: one per core) when it first runs; without the optional extra it says
    in one line how to install it."""
    if name == "local":
        return LocalExecutor()
    if name != "ray":
        raise PruneLabError(f"unknown executor {name!r}; choose {' or '.join(NAMES)}")
    if ray_missing():
        raise PruneLabError(ray_missing())
    return RayExecutor(address, workers)

"""The Ray executor: a batch of trials as Ray tasks on a cluster's workers (the optional extra `prunelab[ray]`).

- Where: `address` (the CLI's --ray-address) or $RAY_ADDRESS joins a running cluster; otherwise the first batch
  starts a local one (no dashboard, no usage statistics, workers' logs not copied to this terminal) of `workers`
  worker processes (default: one per core), every server of it (GCS, raylet, workers) on 127.0.0.1 (see
  _start_local). Only a cluster started here is shut down by close(); a cluster already running in this process
  (ray.init by the caller) is used as it is.
- What runs on a worker: `core.trial.attempt(fn, key, argument)` with torch on one thread, so a trial's figures do
  not depend on how many cores its worker has. `fn` is a module-level function of core (pickled by name); big
  inputs (the model, its data) go to the object store once, through share(), and trials carry the handle.
- A model from the user's own file (`file.py:build`, imported under a `prunelab_user_*` module name by
  core.user_code) cannot be imported by name on a worker: that module, and the modules it imported from its own
  folder, are sent by value with the objects that use them. The user named that file, so it is trusted as it is
  locally; nothing else of theirs is sent.
- Faults: a trial whose worker is lost (killed, crashed, its node gone: any Ray error but a trial's own exception)
  is submitted again, up to MAX_ATTEMPTS in all, then becomes an error outcome "worker lost N times". The retries
  are the driver's, not Ray's own max_retries, because Ray does not say how many attempts a task took and the
  outcome records it. A trial's own PruneLabError is an error outcome (core.trial.attempt); any other exception in
  a trial is a bug and is raised here after the rest of the batch is cancelled.
- Cancel: `cancelled()` is polled every POLL_S; then the unfinished tasks are cancelled (their workers killed) and
  come back as cancelled outcomes; finished ones are kept.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import PruneLabError
from core.trial import OnDone, Outcome, attempt
from core.user_code import one_line

try:  # optional: `pip install -e '.[ray]'`
    import ray
    import ray.cloudpickle
    from ray import exceptions as ray_errors
    from ray._private import ray_constants  # where a local cluster's address is decided (_start_local)
except ImportError:  # the local executor needs none of it
    ray = None

INSTALL = "pip install -e '.[ray]'"  # the README's command for the extra
MAX_ATTEMPTS = 4  # a trial whose worker is lost runs again, at most 3 more times
POLL_S = 0.2  # seconds between looks at cancelled() while trials run
USER_MODULE_PREFIX = "prunelab_user_"  # core.user_code.import_file's module names for a user's .py file
OWN_PACKAGES = {"core", "dashboard", "sample_models", "bench", "tests"}  # PruneLab's: workers import them by name


def ray_missing() -> str:
    """Why Ray cannot be used here, in one line ("" when it can)."""
    return "" if ray is not None else f"the Ray executor needs the optional extra; install it with: {INSTALL}"


def _run_trial(fn: Callable[[Any], Any], key: str, argument: Any) -> Outcome:
    """A trial on a worker: attempt() (which also fixes torch's threads, as for a trial run in the driver)."""
    return attempt(fn, key, argument)


def _start_local(workers: int | None, quiet: dict[str, Any]) -> None:
    """A local cluster whose servers listen on 127.0.0.1 only. Ray takes a node address of 127.0.0.1 for the
    machine's own and binds every interface, unless it thinks clusters are off (its setting for Windows and macOS,
    ENABLE_RAY_CLUSTER: then the node is the loopback address and its servers bind to it; checked with `ss` on
    2.60). That setting is read once at import, so it is set here in this process's Ray and in the environment the
    cluster's processes inherit; joining a cluster (other machines must reach this driver) leaves it alone."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read by the processes ray.init starts
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)


# no Ray-side retries (max_retries=0): the driver retries, counting the attempts (module docstring)
_remote_trial = ray.remote(num_cpus=1, max_retries=0)(_run_trial) if ray is not None else None


@dataclass(frozen=True)
class RayShared:
    """A value in the cluster's object store, put there once; get() on a worker reads it from there."""

    ref: Any  # ray.ObjectRef

    def get(self) -> Any:
        return ray.get(self.ref)


def _ship_user_code() -> None:
    """Send the user's own model files by value: the `prunelab_user_*` modules and the modules they imported from
    their folders (a factory's neighbours: `from my_layers import Net`). Workers cannot import those by name."""
    modules = list(sys.modules.values())
    folders = {Path(m.__file__).resolve().parent for m in modules
               if m.__name__.startswith(USER_MODULE_PREFIX) and getattr(m, "__file__", None)}
    for module in modules:
        path = getattr(module, "__file__", None)
        if (path and module.__name__.split(".")[0] not in OWN_PACKAGES and "site-packages" not in Path(path).parts
                and any(Path(path).resolve().is_relative_to(f) for f in folders)):
            ray.cloudpickle.register_pickle_by_value(module)


class RayExecutor:
    """Trials as Ray tasks; see the module docstring."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        if ray is None:
            raise PruneLabError(ray_missing())
        if workers is not None and workers < 1:
            raise PruneLabError(f"workers must be at least 1, got {workers}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self._started = False  # a local cluster started here: close() shuts it down
        self._joined = False  # a running cluster joined here: close() disconnects, the cluster runs on

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address:
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise PruneLabError(f"cannot join the Ray cluster at {self.address}: {one_line(e)}") from None
            self._joined = True
            return
        _start_local(self.workers, quiet)
        self._started = True

    def close(self) -> None:
        """Shut down a cluster started here; leave a joined one (ray.shutdown only disconnects this driver)."""
        if (self._started or self._joined) and ray.is_initialized():
            ray.shutdown()
        self._started = self._joined = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def share(self, value: Any) -> RayShared:
        self._connect()
        _ship_user_code()
        return RayShared(ray.put(value))

    def run(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], *, on_done: OnDone | None = None,
            cancelled: Callable[[], bool] | None = None) -> list[Outcome]:
        self._connect()
        _ship_user_code()
        return _Batch(fn, items, on_done, cancelled).run()


class _Batch:
    """One run() call: submits, gathers as they finish, resubmits lost trials, cancels on request."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[tuple[str, Any]], on_done: OnDone | None,
                 cancelled: Callable[[], bool] | None) -> None:
        self.fn, self.items, self.on_done, self.cancelled = fn, list(items), on_done, cancelled
        self.outcomes: list[Outcome | None] = [None] * len(self.items)
        self.tries = [0] * len(self.items)
        self.pending: dict[Any, int] = {}  # ObjectRef -> index of its item
        self.finished = 0

    def run(self) -> list[Outcome]:
        for i in range(len(self.items)):
            self._submit(i)
        try:
            while self.pending:
                if self.cancelled is not None and self.cancelled():
                    self._cancel()
                    break
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._gather(ref)
        except BaseException:
            self._cancel_quietly()  # a bug in a trial, or Ctrl-C: the workers stop too
            raise
        return [o for o in self.outcomes if o is not None]

    def _submit(self, i: int) -> None:
        key, argument = self.items[i]
        self.tries[i] += 1
        self.pending[_remote_trial.remote(self.fn, key, argument)] = i

    def _gather(self, ref: Any) -> None:
        i = self.pending.pop(ref)
        key = self.items[i][0]
        try:
            outcome = replace(ray.get(ref), attempts=self.tries[i])
        except ray_errors.RayTaskError:  # the trial raised something other than a PruneLabError: a bug
            raise  # (Ray raises it as an instance of the trial's own exception class too)
        except ray_errors.TaskCancelledError:
            outcome = Outcome(key, cancelled=True, attempts=self.tries[i])
        except ray_errors.RayError as e:  # the worker (or its node) was lost, not the trial's own failure
            if self.tries[i] < MAX_ATTEMPTS:
                self._submit(i)
                return
            outcome = Outcome(key, error=f"worker lost {self.tries[i]} times ({one_line(e)})", attempts=self.tries[i])
        self._land(i, outcome)

    def _land(self, i: int, outcome: Outcome) -> None:
        self.outcomes[i] = outcome
        if outcome.cancelled:
            return
        self.finished += 1
        if self.on_done is not None:
            self.on_done(outcome, self.finished, len(self.items))

    def _cancel(self) -> None:
        """Keep what has finished, cancel the rest."""
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        for ref in ready:
            self._gather(ref)
        for ref, i in list(self.pending.items()):
            ray.cancel(ref, force=True)
            self.outcomes[i] = Outcome(self.items[i][0], cancelled=True, attempts=self.tries[i])
        self.pending.clear()
        for i, o in enumerate(self.outcomes):  # resubmitted while gathering above, then cancelled: none is None
            if o is None:
                self.outcomes[i] = Outcome(self.items[i][0], cancelled=True, attempts=self.tries[i])

    def _cancel_quietly(self) -> None:
        for ref in self.pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while another error is on its way out
                pass
        self.pending.clear()

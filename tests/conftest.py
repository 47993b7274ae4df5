"""Shared fixtures: every sample model loaded once per session, and a private workspace per session."""

from __future__ import annotations

import pytest

from core.models import available, load
from core.spec import ModelSpec
from core.threads import torch_threads

SAMPLE_NAMES = available(trained_only=True)


@pytest.fixture(scope="session", autouse=True)
def _private_workspace(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep runs written by tests out of the user's ~/.prunelab."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PRUNELAB_HOME", str(tmp_path_factory.mktemp("prunelab-home")))
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Tests run torch single-threaded.

    On a shared 2-core machine a second busy process makes torch's two OpenMP threads spin against each
    other: the same pruning step measured 0.4 s with one thread and 15 s with two. Nothing asserts on
    timings, and every determinism test compares runs made under the same setting.
    """
    with torch_threads(1):
        yield


_SPECS: dict[str, ModelSpec] = {}


def get_spec(name: str) -> ModelSpec:
    """The loaded sample model (shared: tests must not modify spec.model; the engine prunes copies)."""
    if name not in _SPECS:
        _SPECS[name] = load(name)
    return _SPECS[name]


@pytest.fixture(params=SAMPLE_NAMES)
def spec(request: pytest.FixtureRequest) -> ModelSpec:
    """Parametrises a test over every registered sample model."""
    return get_spec(request.param)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 worker processes, one per test module that asks (started at once: ~10 s here),
    shut down after the module; executors created meanwhile join it."""
    from core.executors_ray import RayExecutor  # the optional extra: only the modules that ask need it

    executor = RayExecutor(workers=2)
    executor.share(None)  # starts it
    yield executor
    executor.close()

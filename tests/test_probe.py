"""The check-load of a user's model in a separate process (core.probe), in real processes: it reports a model
that loads and the one-line error of one that does not; a factory that never returns is killed at the time limit,
on Cancel, when its session ends, and when the process that started it dies — each time with the processes the
factory started, checked by their pids; a load that needs more memory than allowed is stopped with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_user_models import write

ROOT = Path(__file__).resolve().parents[1]

# Writes its own pid and a grandchild's (a `sleep`), then never returns (bounded at 10 minutes so that a
# regression cannot leave it running for ever).
FOREVER = """
    import os, subprocess, time
    from pathlib import Path

    def build():
        helper = subprocess.Popen(["sleep", "600"])
        Path({pids!r}).write_text(f"{{os.getpid()}} {{helper.pid}}")
        end = time.monotonic() + 600
        while time.monotonic() < end:
            time.sleep(0.2)
"""

TINY = """
    import torch
    from torch import nn

    def build():
        x = torch.randn(8, 2)
        return {"model": nn.Linear(2, 3), "example_input": x[:1], "eval_loader": [(x, torch.zeros(8).long())]}

    def broken():
        raise ValueError("no GPU here")

    def hungry():  # 4 GB of float32, touched
        return {"model": nn.Linear(2, 3), "example_input": torch.ones(2**30) * 2, "eval_loader": []}
"""


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pids_of(path: Path, seconds: float = 120) -> list[int]:
    """The pids the factory wrote, once it has written them."""
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, "the factory never started"
        time.sleep(0.1)
    return [int(p) for p in path.read_text().split()]


def gone(pids: list[int], seconds: float = 30) -> bool:
    """True once none of pids runs (waiting at most `seconds` for the kernel and the reaper)."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def outcome_of(probe, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while (outcome := probe.wait(1.0)) is None:
        assert time.monotonic() < deadline, "the probe never ended"
    return outcome


@pytest.fixture
def forever(tmp_path) -> tuple[str, Path]:
    pids = tmp_path / "pids"
    return f"{write(tmp_path, 'forever.py', FOREVER.format(pids=str(pids)))}:build", pids


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write(tmp_path, "tiny.py", TINY)


def test_a_model_that_loads_is_reported_with_its_summary(tiny):
    from core.probe import Probe

    outcome = outcome_of(Probe(f"{tiny}:build"))
    assert outcome.ok and "9 parameters" in outcome.message  # nn.Linear(2, 3)


def test_a_model_that_fails_gives_its_one_line(tiny):
    from core.probe import Probe

    outcome = outcome_of(Probe(f"{tiny}:broken"))
    assert not outcome.ok and outcome.message.endswith("tiny.py:broken() raised ValueError: no GPU here")


LIMITS_S = (3, 12, 48)  # time limits tried in turn: on a busy machine the child may need more than 3 s to start


def test_a_factory_that_never_returns_is_killed_at_the_time_limit(forever, monkeypatch):
    """The limit counts from the child's start, so on a loaded machine it may strike before the factory runs (then
    the one-line message must still say so, and a longer limit is tried); once the factory has run, the kill must
    take it and the process it started."""
    from core.probe import Probe

    ref, pidfile = forever
    for limit in LIMITS_S:
        monkeypatch.setenv("PRUNELAB_LOAD_TIMEOUT_S", str(limit))
        probe = Probe(ref)
        while not pidfile.exists() and (outcome := probe.wait(0.1)) is None:
            pass
        if not pidfile.exists():  # killed while the child was still starting: nothing of the factory ran
            assert f"time limit of {limit} s" in outcome.message and "\n" not in outcome.message
            continue
        pids = pids_of(pidfile)
        outcome = outcome_of(probe)
        assert not outcome.ok and "\n" not in outcome.message
        assert f"time limit of {limit} s" in outcome.message and "PRUNELAB_LOAD_TIMEOUT_S" in outcome.message
        assert ref in outcome.message
        assert gone(pids), "the factory or the process it started still runs"
        return
    pytest.fail(f"the factory never started within the longest limit, {LIMITS_S[-1]} s")


def test_cancel_kills_the_load_and_what_it_started(forever):
    from core.probe import Probe

    ref, pidfile = forever
    probe = Probe(ref)
    pids = pids_of(pidfile)
    assert all(alive(p) for p in pids)
    probe.cancel()
    assert gone(pids)
    outcome = probe.wait(0)
    assert outcome is not None and not outcome.ok and "cancelled" in outcome.message


def test_a_session_that_ends_stops_the_load(forever):
    """Nobody polls or cancels: the watcher sees the session gone and kills the load by itself."""
    from core.probe import Probe

    ref, pidfile = forever
    probe = Probe(ref, alive=lambda: not pidfile.exists(), grace=0)  # the session ends once the factory runs
    pids = pids_of(pidfile)
    assert gone(pids)
    assert "session" in probe.wait(0).message


def test_the_load_dies_with_the_process_that_started_it(forever, tmp_path):
    """A server killed with SIGKILL takes its check-load with it (the child asked the kernel for that)."""
    ref, pidfile = forever
    starter = subprocess.Popen([sys.executable, "-c", f"from core.probe import Probe; Probe({ref!r}); "
                                                      "import time; time.sleep(600)"], cwd=ROOT,
                               env={**os.environ, "TMPDIR": str(tmp_path)})  # its probe folder: nobody removes it
    try:
        pids = pids_of(pidfile)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        assert gone(pids[:1]), "the check-load outlived its parent"
    finally:
        starter.kill()
        starter.wait()
        for pid in pids_of(pidfile, 0):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_load_that_needs_too_much_memory_is_stopped_with_one_line(tiny, monkeypatch):
    from core.probe import Probe

    monkeypatch.setenv("PRUNELAB_LOAD_MEMORY_MB", "1024")
    outcome = outcome_of(Probe(f"{tiny}:hungry"))
    assert not outcome.ok and "\n" not in outcome.message
    assert "memory" in outcome.message and "PRUNELAB_LOAD_MEMORY_MB" in outcome.message, outcome.message

"""The Ray executor on a real local cluster of 2 worker processes (one per test module, started by a fixture):
outcomes in the order given, a trial's own failure recorded while the batch goes on, cancel keeping what finished,
a worker killed mid-trial retried (real processes, SIGKILL), and sensitivity sweeps on Ray equal to the local
executor's, through the CLI (`prunelab sensitivity mnist-resnet --executor ray`) and while a worker is killed."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from core import sensitivity
from core.cli import main
from core.errors import PruneLabError
from core.executors import LocalExecutor
from core.executors_ray import MAX_ATTEMPTS, RayExecutor
from core.sensitivity import SweepSpec, read_table, sweep
from core.workflows import defaults
from tests.conftest import get_spec

pytestmark = pytest.mark.slow  # a cluster's start-up alone takes ~10 s on the 2-core machine

MODEL = "mnist-resnet"  # the model; two ratios keep the sweep short (9 channel groups x 2)
GRID = "0.3,0.6"


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """This module's local Ray cluster of 2 workers (tests/conftest.py)."""
    return ray_cluster


# ---- trials (module-level: workers import them by name) -------------------------------------------------------

def nap(argument: tuple[str, float]) -> tuple[str, int]:
    """Sleep, then say who ran it; a trial named 'bad' fails for its own reasons."""
    name, seconds = argument
    if name == "bad":
        raise PruneLabError("bad trial: a configuration the model cannot take")
    time.sleep(seconds)
    return name, os.getpid()


def die_first_time(argument: str) -> int:
    """First attempt: write this worker's pid to a file and wait to be killed; later attempts finish."""
    path = Path(argument)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(120)
    return os.getpid()


def die_always(argument: str) -> str:
    """Kill its own worker, every time, unless told it is fine."""
    if argument != "fine":
        os.kill(os.getpid(), signal.SIGKILL)
    return argument


# ---- the executor ----------------------------------------------------------------------------------------------

def test_outcomes_come_back_in_the_order_given(cluster):
    """Trials finishing last-first still come back in the order given; on_done sees each as it lands."""
    items = [(f"t{i}", (f"t{i}", s)) for i, s in enumerate((1.5, 1.0, 0.5, 0.0))]
    landed: list[tuple[str, int, int]] = []
    outcomes = cluster.run(nap, items, on_done=lambda o, done, total: landed.append((o.key, done, total)))
    assert [o.key for o in outcomes] == [k for k, _ in items]
    assert all(o.ok and o.attempts == 1 for o in outcomes)
    assert [o.value[0] for o in outcomes] == [k for k, _ in items]
    assert all(o.where.endswith(f"pid {o.value[1]}") and o.value[1] != os.getpid() for o in outcomes)
    assert [(d, t) for _, d, t in landed] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(k for k, _, _ in landed) == sorted(k for k, _ in items)


def test_a_trials_own_failure_is_its_outcome_and_the_batch_goes_on(cluster):
    outcomes = cluster.run(nap, [("a", ("a", 0)), ("bad", ("bad", 0)), ("c", ("c", 0))])
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error == "bad trial: a configuration the model cannot take" and outcomes[1].where


def test_cancel_keeps_finished_trials_and_cancels_the_rest(cluster):
    """Cancelled once the first trial has landed: it is kept; the others (sleeping 60 s) come back cancelled."""
    items = [("quick", ("quick", 0))] + [(f"slow{i}", (f"slow{i}", 60)) for i in range(3)]
    landed: list[str] = []
    outcomes = cluster.run(nap, items, on_done=lambda o, done, total: landed.append(o.key),
                           cancelled=lambda: bool(landed))
    assert landed == ["quick"] and outcomes[0].ok
    assert [o.cancelled for o in outcomes[1:]] == [True, True, True]
    assert [o.key for o in outcomes] == [k for k, _ in items]


def test_a_worker_killed_mid_trial_is_retried(cluster, tmp_path):
    """The trial's worker is SIGKILLed while it runs; the trial runs again elsewhere and its outcome says 2
    attempts; the other trial is untouched."""
    marker = tmp_path / "pid"
    killed: list[int] = []

    def killer() -> None:
        while not marker.exists() or not marker.read_text():
            time.sleep(0.05)
        killed.append(int(marker.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    outcomes = cluster.run(die_first_time, [("victim", str(marker))])
    thread.join(timeout=5)
    assert killed, "the trial never started"
    (outcome,) = outcomes
    assert outcome.ok and outcome.attempts == 2
    assert outcome.value != killed[0] and outcome.where.endswith(f"pid {outcome.value}")


def test_a_worker_lost_every_time_becomes_an_error_and_the_batch_goes_on(cluster):
    lost, fine = cluster.run(die_always, [("doomed", "doomed"), ("fine", "fine")])
    assert fine.ok and fine.value == "fine"
    assert not lost.ok and not lost.cancelled and lost.attempts == MAX_ATTEMPTS
    assert lost.error.startswith(f"worker lost {MAX_ATTEMPTS} times")


# ---- sensitivity sweeps on Ray ---------------------------------------------------------------------------------

def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def local_table(tmp_path_factory) -> Path:
    """The local executor's table of the CLI's mnist-resnet sweep (two ratios), measured afresh."""
    path = tmp_path_factory.mktemp("local") / "local.csv"
    code, _, err = _cli("sensitivity", MODEL, "--grid", GRID, "--no-cache", "--out", path)
    assert code == 0, err
    return path


def test_cli_sweep_on_ray_equals_the_local_table(cluster, local_table, tmp_path):
    """`prunelab sensitivity mnist-resnet --executor ray` (2 workers) writes the local executor's table, byte for
    byte."""
    path = tmp_path / "ray.csv"
    code, out, err = _cli("sensitivity", MODEL, "--grid", GRID, "--no-cache", "--executor", "ray", "--workers", 2,
                          "--out", path)
    assert code == 0, err
    assert path.read_bytes() == local_table.read_bytes()
    assert "18 rows (9 units x 2 ratios)" in out


def _trial_workers() -> list[int]:
    """Pids of Ray workers running a trial now (Ray titles a busy worker after its task: ray::_run_trial)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "cmdline").read_bytes().startswith(b"ray::_run_trial"):
                    pids.append(int(proc.name))
    return pids


def test_a_sweep_survives_a_killed_worker(cluster, local_table):
    """One worker is SIGKILLed while it measures a unit; the sweep completes with the local table."""
    spec = get_spec(MODEL)
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, defaults.METHOD, defaults.SWEEP_CRITERION,
                           tuple(float(r) for r in GRID.split(",")))
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline:
            if busy := _trial_workers():
                time.sleep(1.0)  # well inside its unit's measurements
                with contextlib.suppress(ProcessLookupError):
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    table = sweep(spec, sweep_spec, use_cache=False, executor=RayExecutor())
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    pd.testing.assert_frame_equal(table, read_table(local_table), check_exact=True)


def test_a_ray_sweep_is_a_cache_hit_for_a_local_one_and_back(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    spec, calls = get_spec("digits-mlp"), [0]
    real = sensitivity.evaluate

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sensitivity, "evaluate", counting)  # counts the driver's evaluations (workers: none)
    on_ray = SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.5,), eval_samples=100, calibration_samples=64)
    measured = sweep(spec, on_ray, executor=RayExecutor())
    assert calls[0] == 0  # measured on the workers
    pd.testing.assert_frame_equal(sweep(spec, on_ray, executor=LocalExecutor()), measured)
    assert calls[0] == 0  # read from the cache

    on_local = SweepSpec(spec.name, spec.fingerprint, "unstructured", grid=(0.5,), eval_samples=100,
                         calibration_samples=64)
    measured = sweep(spec, on_local, executor=LocalExecutor())
    calls[0] = 0

    class Refusing(RayExecutor):
        def run(self, *args, **kwargs):
            raise AssertionError("a cached sweep ran trials")

    pd.testing.assert_frame_equal(sweep(spec, on_local, executor=Refusing()), measured)
    assert calls[0] == 0


def test_a_sweep_of_the_users_own_model_file_runs_on_ray(cluster, tmp_path):
    """A `file.py:build` model whose class lives in a neighbouring module of the user's folder: workers cannot
    import either by name (the folder is not on their path), so both go with the model; the table equals the local
    one."""
    from tests.test_user_models import CNN_FACTORY, CNN_PARTS, write

    folder = tmp_path / "mine"
    folder.mkdir()
    write(folder, "um_cnn_parts.py", CNN_PARTS)
    ref = f"{write(folder, 'cnn.py', CNN_FACTORY)}:build"
    tables = []
    for executor in ("local", "ray"):
        path = tmp_path / f"{executor}.csv"
        code, _, err = _cli("sensitivity", ref, "--grid", "0.5", "--no-cache", "--executor", executor, "--out", path)
        assert code == 0, err
        tables.append(path.read_bytes())
    assert tables[0] == tables[1]


# ---- where the cluster listens ---------------------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    """pid's child processes and theirs (from /proc: the local cluster's GCS, raylet and workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found.update(children)
        todo += children
    return found


def test_a_local_cluster_listens_on_loopback_only(cluster):
    """Every TCP port the local cluster's processes listen on is bound to 127.0.0.1 (Ray would bind them to every
    interface, with the machine's own address as the node's)."""
    import subprocess

    cluster.run(nap, [("a", ("a", 0.0))])  # workers up
    pids = _descendants(os.getpid())
    listening = [line.split() for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True,
                                                          check=True).stdout.splitlines()]
    ours = [cols[3] for cols in listening if any(f"pid={p}," in cols[-1] for p in pids)]
    assert ours, "no listening socket of the cluster was found"
    assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in ours), ours

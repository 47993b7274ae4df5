"""A read-only or full workspace, in real `prunelab` processes (issue 11, item 5): results the user asked for are
never lost to a cache write, a run whose files cannot all be written is recorded failed with the reason, and
`experiments list` keeps working.

Read-only: as root (whom file permissions do not stop) the workspace is bind-mounted read-only inside a private
mount namespace that ends with the process; otherwise its write permissions are removed. Full disk: the process
runs with RLIMIT_FSIZE (`ulimit -f`), under which writing past the limit fails with EFBIG, as a full disk fails
with ENOSPC: the same OSError path in the code, with every other file kept as it was.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import PruneConfig
from core.files import write_atomic
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
PRUNELAB = str(ROOT / ".venv" / "bin" / "prunelab")
RUN = ["--method", "channel", "--finetune-epochs", "0", "--latency-batches", "1"]
TIMEOUT_S = 600


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PRUNELAB_HOME", "PRUNELAB_DEBUG")}


def _lines(stderr: str) -> list[str]:
    """stderr without progress bars: the lines a user reads."""
    parts = [p.strip() for p in stderr.replace("\r", "\n").splitlines()]
    return [p for p in parts if p and "%|" not in p]


def _can_mount_readonly(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && ! touch "$0/x" 2>/dev/null'
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", script, str(probe)], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def readonly(tmp_path) -> Iterator:
    """run(home, *args): `prunelab --home home *args` with home read-only for that process."""
    as_root = os.geteuid() == 0
    if as_root and not _can_mount_readonly(tmp_path):
        pytest.skip("running as root without mount namespaces: cannot make a folder read-only")
    changed: list[tuple[Path, int]] = []

    def run(home: Path, *args: object) -> subprocess.CompletedProcess:
        argv = [PRUNELAB, "--home", str(home), *map(str, args)]
        if as_root:
            script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
            argv = ["unshare", "-m", "sh", "-c", script, str(home), *argv]
        else:
            for path in [home, *home.rglob("*")]:
                changed.append((path, path.stat().st_mode))
                path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            return subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
        finally:
            for path, mode in reversed(changed):
                path.chmod(mode)
            changed.clear()

    yield run


def _file_limit(kib: int):
    """preexec_fn: files this process writes may not grow past kib KiB (as if the disk filled up there)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))
    return limit


def _warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("prunelab: warning: ")]


# --- caches are best-effort ----------------------------------------------------------------------------------------


def test_sensitivity_with_a_read_only_workspace_still_writes_its_csv(tmp_path, readonly):
    home, out = tmp_path / "home", tmp_path / "out" / "sens.csv"
    home.mkdir()
    out.parent.mkdir()
    proc = readonly(home, "sensitivity", "digits-mlp", "--grid", "0.5", "--eval-samples", "200",
                    "--calibration-samples", "64", "--out", out)
    lines = _lines(proc.stderr)
    assert proc.returncode == 0, lines
    assert out.is_file() and len(out.read_text().splitlines()) == 1 + 2  # header + one row per channel group
    (warning,) = _warnings(lines)  # one line, and said before the sweep (the cache folder is known to be read-only)
    assert "cache" in warning and str(home) in warning and len(lines) == 1, lines
    assert not (home / "cache").exists()


def test_baseline_with_a_read_only_workspace_still_prints_its_numbers(tmp_path, readonly):
    home = tmp_path / "home"
    home.mkdir()
    proc = readonly(home, "baseline", "digits-mlp", "--latency-batches", "1,32", "--json")
    lines = _lines(proc.stderr)
    assert proc.returncode == 0, lines
    metrics = json.loads(proc.stdout)
    assert metrics["params"] == 17226 and metrics["latency_ms"] > 0 and metrics["latency_ms_batch32"] > 0
    (warning,) = _warnings(lines)  # two latencies not cached: one line
    assert "cache" in warning and len(lines) == 1, lines


# --- the store on a read-only workspace ----------------------------------------------------------------------------


def _recorded_home(tmp_path: Path) -> tuple[Path, str]:
    """A workspace whose store records one finished run (files under its runs/)."""
    home = tmp_path / "home"
    old = os.environ.get("PRUNELAB_HOME")
    os.environ["PRUNELAB_HOME"] = str(home)
    try:
        store = Store()
        folder = home / "runs" / "kept"
        config = PruneConfig("digits-mlp", "channel", {"fc1": 0.5})
        exp_id = store.start(folder, config)
        config.save(folder / "config.json")
        metrics = {"pruned": {"params": 555}}
        write_atomic(folder / "metrics.json", json.dumps(metrics).encode())
        store.finish(exp_id, metrics)
    finally:
        if old is None:
            os.environ.pop("PRUNELAB_HOME")
        else:
            os.environ["PRUNELAB_HOME"] = old
    return home, exp_id


def test_experiments_list_and_show_work_on_a_read_only_workspace(tmp_path, readonly):
    home, exp_id = _recorded_home(tmp_path)
    proc = readonly(home, "experiments", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(e["id"], e["status"], e["params"]) for e in json.loads(proc.stdout)] == [(exp_id, "done", 555)]
    assert len(_warnings(_lines(proc.stderr))) <= 1 and "Traceback" not in proc.stderr
    proc = readonly(home, "experiments", "show", exp_id)
    assert proc.returncode == 0 and "555" in proc.stdout, proc.stderr


def test_prune_with_a_read_only_workspace_says_so_before_work_and_keeps_its_files(tmp_path, readonly):
    home, _ = _recorded_home(tmp_path)
    out = tmp_path / "out" / "run"
    proc = readonly(home, "prune", "digits-mlp", *RUN, "--ratio", "0.5", "--out", out)
    assert proc.returncode == 0, proc.stderr
    warnings = _warnings(_lines(proc.stderr))
    (warning,) = [w for w in warnings if "experiment store" in w]  # and one for the latency cache
    assert "not recorded" in warning and "cannot be written" in warning and "read-only" in warning, warnings
    assert proc.stderr.index(warning) < proc.stderr.index("measuring baseline")  # said before the work
    assert (out / "metrics.json").is_file() and (out / "model.onnx").is_file()


# --- a full disk ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_whose_files_do_not_fit_is_recorded_failed_and_the_list_keeps_working(tmp_path):
    """The model file (about 70 KB at ratio 0) does not fit under a 48 KiB file limit; config.json, the store and
    the identity do. The run is failed with the reason, never done; the list works, even at a zero limit."""
    home, out = tmp_path / "home", tmp_path / "out" / "full"
    proc = subprocess.run([PRUNELAB, "--home", str(home), "prune", "digits-mlp", *RUN, "--ratio", "0", "--out",
                           str(out)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
                          preexec_fn=_file_limit(48))
    lines = _lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("prunelab: error: ") and "File too large" in lines[0] and str(out) in lines[0]
    assert not (out / "metrics.json").exists()

    for limit in (None, 0):  # a normal process, and one that cannot grow any file (the disk is still full)
        listed = subprocess.run([PRUNELAB, "--home", str(home), "experiments", "list", "--json"], cwd=ROOT, env=_env(),
                                capture_output=True, text=True, timeout=TIMEOUT_S,
                                preexec_fn=None if limit is None else _file_limit(limit))
        assert listed.returncode == 0, (limit, listed.stderr)
        (exp,) = json.loads(listed.stdout)
        assert exp["status"] == "failed" and "File too large" in exp["error"] and exp["params"] is None, exp
    conn = sqlite3.connect(home / "experiments.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    shutil.rmtree(out)


def test_a_full_disk_is_said_before_any_work(tmp_path, monkeypatch, capsys):
    """A disk with next to nothing free under --out is known before the model loads: one line, nothing written,
    nothing recorded. (The free space statvfs reports is replaced; filling a real disk is not an option here.)"""
    from core.cli import main

    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=4096))
    code = main(["prune", "digits-mlp", *RUN, "--ratio", "0.5", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("prunelab: error: "), err
    assert "4,096 bytes free" in err and str(tmp_path) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "home" / "experiments.db").exists()


def test_damaged_cache_entries_are_measured_again(tmp_path, monkeypatch):
    """A truncated or edited cache file is a miss, not an error: the sweep is measured again and the entry
    replaced; a damaged latency table reads as absent."""
    from core import hardware, sensitivity
    from tests.conftest import get_spec

    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    spec = get_spec("digits-mlp")
    sweep_spec = sensitivity.SweepSpec(spec.name, spec.fingerprint, "channel", grid=(0.5,), eval_samples=200,
                                       calibration_samples=64)
    path = sensitivity.cache_path(sweep_spec)
    write_atomic(path, b"model,unit\ndigits-mlp,fc")  # cut short
    table = sensitivity.sweep(spec, sweep_spec)
    assert len(table) == 2 and sensitivity.read_table(path).equals(table)
    table_path = hardware.cache_path(spec, batch=1, threads=1)
    write_atomic(table_path, b'{"widths": ')
    assert hardware.cached(spec, batch=1) is None

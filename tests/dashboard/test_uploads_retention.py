"""Uploads are not kept for ever (issue 11, item 8): when the dashboard starts, files in the workspace's uploads
folder older than the retention (PRUNELAB_UPLOAD_DAYS, default 7 days) are deleted. Only regular files directly
inside that folder: nothing outside it, nothing behind a symlink, no sub-folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.errors import PruneLabError
from dashboard import uploads
from tests.dashboard.test_app import open_app

DAY = 86_400  # seconds


def aged(path: Path, days: float, data: bytes = b"x") -> Path:
    """Write path and set its modification (and access) time `days` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - days * DAY
    os.utime(path, (then, then))
    return path


class Upload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data, self.size = name, data, len(data)

    def getvalue(self) -> bytes:
        return self.data


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PRUNELAB_UPLOAD_DAYS", raising=False)
    return tmp_path / "home"


def test_the_dashboard_start_deletes_old_uploads_and_keeps_fresh_ones(monkeypatch, home):
    old = aged(home / "uploads" / "0123-old.pt", 8)
    fresh = aged(home / "uploads" / "4567-fresh.npz", 6)
    beside = aged(home / "runs" / "old-run" / "config.json", 30)  # the workspace's other files
    open_app(monkeypatch, "digits-mlp", home)
    assert not old.exists()
    assert fresh.exists() and beside.exists()


def test_nothing_outside_the_folder_or_behind_a_symlink_is_touched(home, tmp_path):
    outside = aged(tmp_path / "elsewhere" / "precious.pt", 30)
    folder = home / "uploads"
    folder.mkdir(parents=True)
    (folder / "link.pt").symlink_to(outside)
    os.utime(folder / "link.pt", (time.time() - 30 * DAY,) * 2, follow_symlinks=False)
    nested = aged(folder / "sub" / "deep.pt", 30)
    removed = uploads.clean()
    assert removed == []
    assert outside.read_bytes() == b"x" and (folder / "link.pt").is_symlink() and nested.exists()


def test_an_uploads_folder_that_is_a_symlink_is_left_alone(home, tmp_path):
    target = tmp_path / "shared"
    precious = aged(target / "precious.pt", 30)
    home.mkdir(parents=True)
    (home / "uploads").symlink_to(target, target_is_directory=True)
    assert uploads.clean() == []
    assert precious.exists()


def test_uploading_the_same_file_again_makes_it_fresh(home):
    path = uploads.save(Upload("w.pt", b"weights"))
    os.utime(path, (time.time() - 8 * DAY,) * 2)
    assert uploads.save(Upload("w.pt", b"weights")) == path  # the same content: the same file, kept
    assert uploads.clean() == [] and path.exists()


@pytest.mark.parametrize(("days", "kept"), [("inf", True), ("30", True), ("0.5", False), ("0", False)])
def test_the_retention_comes_from_the_environment(monkeypatch, home, days, kept):
    monkeypatch.setenv("PRUNELAB_UPLOAD_DAYS", days)
    path = aged(home / "uploads" / "a.pt", 1)
    assert uploads.clean() == ([] if kept else [path])
    assert path.exists() == kept


@pytest.mark.parametrize("days", ["a week", "-1", "nan"])
def test_a_bad_retention_is_one_clear_line_and_deletes_nothing(monkeypatch, home, days):
    monkeypatch.setenv("PRUNELAB_UPLOAD_DAYS", days)
    path = aged(home / "uploads" / "a.pt", 100)
    with pytest.raises(PruneLabError, match="PRUNELAB_UPLOAD_DAYS must be"):
        uploads.clean()
    assert path.exists()

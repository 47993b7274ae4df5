"""`prunelab dashboard` starts Streamlit with the settings the dashboard relies on (the argv it hands to exec)."""

from __future__ import annotations

import os

import pytest

from core.cli import main


class Exec(BaseException):
    """Raised instead of replacing this process: carries the argv."""


def _argv(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    def fake_execv(path: str, argv: list[str]) -> None:
        raise Exec(argv)

    monkeypatch.setattr(os, "execv", fake_execv)
    with pytest.raises(Exec) as caught:
        main(["dashboard", *args])
    return caught.value.args[0]


def _setting(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_server_binds_loopback_and_skips_the_full_collection_after_every_rerun(monkeypatch) -> None:
    """A page watching a job reruns a fragment every second or two; Streamlit's forced gc.collect(2) after each rerun
    kept the server at ~50% of a core while a search ran (py-spy: 327 of 477 samples in it), taken from the job it
    watches on a 2-core machine. Python's own generational collection still runs."""
    argv = _argv(monkeypatch, "--model", "digits-mlp")
    assert _setting(argv, "--server.address") == "127.0.0.1"
    assert _setting(argv, "--runner.postScriptGC") == "false"

"""core.executors.get: the executor `--executor` names; without the optional Ray extra, one line saying how to
install it (the absence simulated by hiding the ray module), and the CLI's one-line error with exit status 2."""

from __future__ import annotations

import contextlib
import io

import pytest

from core import executors, executors_ray
from core.cli import main
from core.errors import PruneLabError


def test_local_is_the_local_executor_and_shares_the_object_itself():
    local = executors.get("local")
    assert isinstance(local, executors.LocalExecutor)
    value = object()
    assert local.share(value).get() is value


def test_an_unknown_executor_is_named():
    with pytest.raises(PruneLabError, match="unknown executor 'slurm'; choose local or ray"):
        executors.get("slurm")


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(executors_ray, "ray", None)
    with pytest.raises(PruneLabError) as info:
        executors.get("ray")
    message = str(info.value)
    assert "pip install -e '.[ray]'" in message and "\n" not in message


def test_without_ray_the_cli_says_it_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(executors_ray, "ray", None)
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sensitivity", "digits-mlp", "--executor", "ray", "--grid", "0.5", "--no-cache",
                     "--out", str(tmp_path / "t.csv")])
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("prunelab: error: ")
    assert "pip install -e '.[ray]'" in err.getvalue()
    assert not (tmp_path / "t.csv").exists()

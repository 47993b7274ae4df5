"""The CLI and the dashboard are two front ends of one engine: for the same request they must give the same answer.

- The budget solver: `prunelab allocate` writes a config; the Tune page's solver fills the sliders. For the same
  strategy, target and bounds the ratios written equal the slider values filled — including a latency target,
  where the answer depends on the baseline latency each front end starts from (core.workflows.baseline_latency_ms,
  the one figure both use).
- Run and record: the same config applied from the CLI (`prunelab apply`) and from the Tune page's run job is
  recorded in the store with equal deterministic metrics (params, non-zero params, FLOPs, size, accuracy) for the
  baseline and the pruned model. Latency is measured (it varies run to run), so it is not compared.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import streamlit as st

from core.cli import main
from core.config import PruneConfig
from core.estimate import build_cost_model
from core.export import export_onnx
from core.latency import measure_cached
from core.store import Store
from tests.conftest import get_spec
from tests.dashboard.test_app import open_app, run_job, wait_for_job

MODEL = "digits-mlp"  # two channel units (fc1, fc2): seconds per solve and per run
DETERMINISTIC = ("params", "nonzero_params", "flops", "size_bytes", "accuracy")


def _cli(*argv) -> str:
    """Run `prunelab argv` in-process; its stdout (the test fails on a non-zero exit, showing stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return out.getvalue()


def _latency_at_a_boundary(target_ratio: float) -> float:
    """A latency target (ms) exactly at what a uniform `target_ratio` reaches on the baseline's measured b1 latency
    (the FLOPs-share estimate, core.allocate.Budget.latency). Taken at the lower of the raw measurement and the
    figure the Model page shows (5 decimals): a front end that started from another figure than the other one
    (e.g. the rounded one) lands on another side of this step, and gives another answer."""
    spec = get_spec(MODEL)
    onnx, _ = export_onnx(spec.model, spec.example_input)
    raw = measure_cached(onnx, tuple(spec.example_input.shape[1:]), batch=1, threads=1).median_ms  # cached on disk
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    share = cm.estimate({u.name: target_ratio for u in cm.units})["flops"] / cm.estimate({})["flops"]
    return min(raw, round(raw, 5)) * share


def _sweep(home: Path) -> None:
    """The default channel/l1 sweep, from the CLI: cached in the workspace, where the Tune page finds it."""
    _cli("--home", home, "sensitivity", MODEL, "--out", home / "sweep.csv")


CASES = {  # name: (strategy, target kind, target value or None for the latency boundary, min, max, needs a sweep)
    "uniform-latency": ("uniform", "latency_ms", None, 0.0, 0.9, False),
    "global-flops-bounded": ("global", "flops", 2.0, 0.1, 0.6, False),
    "sensitivity-params": ("sensitivity", "params", 2.0, 0.0, 0.9, True),
}
CLI_TARGET = {"flops": "--target-flops", "params": "--target-params", "latency_ms": "--target-latency-ms"}


@pytest.mark.slow  # the Tune page on digits-mlp plus one CLI solve: ~20-40 s on 2 busy cores
@pytest.mark.parametrize("case", list(CASES))
def test_cli_allocate_and_the_tune_solver_give_the_same_ratios(monkeypatch, tmp_path, case):
    strategy, kind, value, low, high, swept = CASES[case]
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    if swept:
        _sweep(tmp_path)
    value = value if value is not None else _latency_at_a_boundary(0.3)

    argv = ["--home", tmp_path, "allocate", MODEL, "--strategy", strategy, CLI_TARGET[kind], repr(value),
            "--min-ratio", low, "--max-ratio", high, "--out", tmp_path / "config.json"]
    if swept:
        argv += ["--sensitivity", tmp_path / "sweep.csv"]
    _cli(*argv)
    written = PruneConfig.load(tmp_path / "config.json").ratios

    st.cache_data.clear()  # a dashboard server on this workspace: not one that measured in an earlier test's
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.selectbox(key="solver-target").set_value(kind)
    at.number_input(key="solver-value").set_value(value)
    at.selectbox(key="solver-strategy").set_value(strategy)
    at.number_input(key="solver-min").set_value(low)
    at.number_input(key="solver-max").set_value(high)
    at.button(key="solve").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    filled = {s.key.rsplit("|", 1)[1]: s.value for s in at.slider if s.key.startswith(f"ratio|{MODEL}|channel|")}
    assert filled and {u: r for u, r in filled.items() if r > 0} == written


@pytest.mark.slow  # a run from the Tune page's worker and the same config from the CLI: ~40 s on 2 busy cores
def test_cli_apply_and_the_tune_run_record_the_same_metrics(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.slider(key=f"ratio-all|{MODEL}|channel").set_value(0.5).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    job = run_job(at, MODEL)
    assert job is not None, "the run did not start"
    wait_for_job(at)
    page_run = Store().get(run_job(at, MODEL).result)
    assert page_run.status == "done" and page_run.folder

    _cli("--home", tmp_path, "apply", Path(page_run.folder) / "config.json", "--out", tmp_path / "cli-run")
    cli_id = Store().id_for_folder(tmp_path / "cli-run")
    cli_run = Store().get(cli_id)
    assert cli_run.status == "done" and cli_run.config.ratios == page_run.config.ratios
    for side in ("baseline", "pruned"):
        page = {k: page_run.metrics[side][k] for k in DETERMINISTIC}
        cli = {k: cli_run.metrics[side][k] for k in DETERMINISTIC}
        assert page == cli, side

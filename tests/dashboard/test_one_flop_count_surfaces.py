"""One model, one FLOP count on every surface: the Model page (its tiles and layer table), the Tune estimate,
the CLI (`prunelab baseline --json`, `prunelab prune`'s table), metrics.json, the experiment store and the
Results page all show the same number for mnist-vit, before and after removing half of its heads; and the
Model page's figures stay right while another thread runs forward passes (as the dashboard's job thread and
other sessions do). Reproduces issue 11 item 7: 2.93 M / 2.1 M / 4.85 M for one baseline, a "(model)" row
of -2,476,544 FLOPs, "What pruning each buys" at -195%, and q/k/v shown at 64 -> 64 after a head cut."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models import load
from dashboard.components.format import human
from tests.core.test_one_flop_count import forward_passes_elsewhere, textbook_mnist_vit
from tests.dashboard.nav import goto
from tests.test_cli import _call

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
BASE, HALF_HEADS = textbook_mnist_vit(), textbook_mnist_vit(heads=2)  # 4,854,016 and 3,591,936


def _app(monkeypatch: pytest.MonkeyPatch, home: Path) -> AppTest:
    monkeypatch.setenv("PRUNELAB_MODEL", "mnist-vit")
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest, label: str) -> list:
    return [m for m in at.metric if m.label == label]


def _layer_table(at: AppTest):
    return next(df.value for df in at.dataframe if "flops share %" in df.value.columns)


def _estimate_hover(at: AppTest) -> dict[str, tuple[int, int]]:
    """The Tune estimate chart's exact figures: label -> (estimate, baseline)."""
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "estimate" in c.proto.spec
                 and "dense FLOPs" in c.proto.spec)
    bars = chart["data"][0]
    return {label: tuple(int(v.replace(",", "")) for v in text.split(" of "))
            for label, text in zip(bars["x"], bars["hovertext"], strict=True)}


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str, home: Path) -> str:
    """The stdout of `prunelab ARGS` run in this process on the workspace home. The count is what this file
    checks, not the process boundary (tests/test_cli_user_models.py and test_stages run the entry point
    itself): three fresh processes re-imported torch, re-read MNIST and re-exported mnist-vit, ~50 s of 84."""
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    code, out, err = _call(*args)
    assert code == 0, err[-2000:]
    return out


@pytest.mark.slow
def test_model_page_figures_hold_while_another_thread_runs_the_model(monkeypatch, tmp_path):
    spec = load("mnist-vit")
    with forward_passes_elsewhere(spec.model, shape=(1, 28, 28)):
        at = _app(monkeypatch, tmp_path)
    assert _metrics(at, "FLOPs / image")[0].value == human(BASE)
    table = _layer_table(at)
    assert (table["flops"] >= 0).all() and table["flops share %"].between(0, 100).all(), table
    assert int(table["flops"].sum()) == BASE
    assert int(table.loc[table["layer"] == "(model)", "flops"].iloc[0]) == 0


def test_what_pruning_each_buys_shares_are_shares_of_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    from dashboard import cache

    spec = load("mnist-vit")
    with forward_passes_elsewhere(spec.model, shape=(1, 28, 28)):
        costs = cache.unit_costs("mnist-vit", "channel")
    for column in ("params %", "FLOPs %", "latency %"):
        assert costs[column].between(0, 100).all(), costs[["unit", column]]
        assert costs[column].sum() <= 100 + 1e-9
    # a share of the whole model: the residual stream's layers (patch_embed's unit) are 1/4 of its FLOPs
    stream = costs.loc[costs["unit"] == "patch_embed"].iloc[0]
    assert stream["FLOPs %"] == pytest.approx(100 * stream["flops"] / BASE)


@pytest.mark.slow
def test_every_surface_shows_the_same_count_before_and_after_a_head_cut(monkeypatch, tmp_path):
    # the CLI: baseline, then half the heads removed into the workspace the dashboard reads
    baseline = json.loads(_cli(monkeypatch, "baseline", "mnist-vit", "--json", "--latency-batches", "1", home=tmp_path))
    out = tmp_path / "runs" / "vit-half-heads"
    table = _cli(monkeypatch, "prune", "mnist-vit", "--method", "head", "--ratio", "0.5", "--finetune-epochs", "0",
                 "--latency-batches", "1", "--out", str(out), home=tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("FLOPs (batch 1)"))
    cli_base, cli_pruned = (int(v.replace(",", "")) for v in re.findall(r"[\d,]{4,}", row))
    saved = json.loads((out / "metrics.json").read_text())
    stored = json.loads(_cli(monkeypatch, "experiments", "list", "--json", home=tmp_path))
    assert (baseline["flops"], cli_base, saved["baseline"]["flops"]) == (BASE, BASE, BASE)
    assert (cli_pruned, saved["pruned"]["flops"], stored[0]["flops"]) == (HALF_HEADS,) * 3

    at = _app(monkeypatch, tmp_path)
    # Model page: tiles and layer table
    assert _metrics(at, "FLOPs / image")[0].value == human(BASE)
    assert int(_layer_table(at)["flops"].sum()) == BASE
    # Tune: the estimate at zero is the baseline; half the heads gives the count after the cut
    goto(at, "tune")
    assert _estimate_hover(at)["dense FLOPs"] == (BASE, BASE)
    at.radio(key="method").set_value("head").run()
    at.slider(key="ratio-all|mnist-vit|head").set_value(0.5).run()
    assert _estimate_hover(at)["dense FLOPs"] == (HALF_HEADS, BASE)
    tune = _metrics(at, "FLOPs / image (estimate)")[0]
    assert tune.value == human(HALF_HEADS) and tune.delta == f"{100 * (HALF_HEADS / BASE - 1):+.1f}%"
    # Results: the saved run's tiles (same change as the estimate) and its exact table
    goto(at, "results")
    results = _metrics(at, "FLOPs / image")[-1]
    assert results.value == human(HALF_HEADS) and results.delta == tune.delta == "-26.0%"
    exact = next(df.value for df in at.dataframe if "pruned / baseline" in df.value.columns)
    flops = exact.loc[exact["metric"] == "FLOPs (per image)"].iloc[0]
    assert (flops["baseline"], flops["pruned"]) == (BASE, HALF_HEADS)
    # Results' width chart: q/k/v at 32 after the cut, and 4 -> 2 heads of width 16
    widths = next(spec for spec in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                  if any("blocks.0.attn heads" in (trace.get("x") or []) for trace in spec["data"]))
    assert widths["layout"]["yaxis2"]["title"]["text"] == "heads / head dim"
    after = {x: y for trace in widths["data"] if trace["name"] == "after" for x, y in
             zip(trace["x"], _numbers(trace["y"]), strict=True)}
    assert after["blocks.0.attn.q"] == after["blocks.0.attn.v"] == 32 and after["blocks.0.attn.proj"] == 64
    assert after["blocks.0.attn heads"] == 2 and after["blocks.0.attn head dim"] == 16


def _numbers(y) -> list[float]:
    """A plotly trace's numbers, plain or base64-packed ({"dtype", "bdata"}, as plotly 7 stores arrays)."""
    if isinstance(y, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)

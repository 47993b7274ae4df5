"""Benchmark: the dashboard on big models (ResNet-50, ViT-S/16) — how many sliders each method has, what a
slider move costs (the cost-model re-estimate and the Tune page's grouping and search functions) and how
long the whole page takes to render (AppTest: the first run, then reruns after a slider move). Writes its
section of docs/benchmarks.md.

    .venv/bin/python -m bench.large_models [--models resnet50 vit-s16]

The first run starts from empty Streamlit caches: it loads the model, traces its channel groups, measures
the baseline (ONNX export, onnxruntime latency) and scores channels for the Model page's heatmap. A rerun
after a slider move is the interactive figure: every tab's script runs again, from the caches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from bench.docs import write_section
from core.estimate import CostModel, build_cost_model
from core.methods import units
from core.models import load
from dashboard.components.groups import filter_names, group_names
from dashboard.components.slider_groups import FLAT_MAX
from dashboard.components.sliders import slider_key

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
MODELS = ("resnet50", "vit-s16")
METHODS = ("channel", "unstructured", "neuron", "head", "layer")
QUERY = {"resnet50": "layer3", "vit-s16": "blocks.7"}  # a group the search narrows to
CALLS, RERUNS = 200, 5


def median_ms(fn: Callable[[int], object], calls: int = CALLS) -> float:
    """Median wall time of fn(i) over `calls` calls, in ms."""
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def estimate_ms(cm: CostModel) -> float:
    """CostModel.estimate after one unit's ratio changed (a different unit and value each call)."""
    names = [u.name for u in cm.units]
    ratios = dict.fromkeys(names, 0.3)

    def move(i: int) -> dict[str, int]:
        ratios[names[i % len(names)]] = 0.05 * (i % 19)
        return cm.estimate(ratios)

    return median_ms(move)


def method_cells(cm: CostModel, query: str) -> list[str]:
    """Layout, estimate, grouping and search times (ms) of one method's sliders."""
    names = [u.name for u in cm.units]
    layout = f"{len(group_names(names))} groups" if len(names) > FLAT_MAX else "flat"
    return [layout, f"{estimate_ms(cm):.3f}", f"{median_ms(lambda _: group_names(names)):.3f}",
            f"{median_ms(lambda _: filter_names(names, query)):.3f}"]


def slider_move(name: str) -> list[str]:
    """Table row cells of one model: units per method, then per channel and unstructured method_cells."""
    spec = load(name)
    cells = [str(len(units(spec.model, spec.example_input, m))) for m in METHODS]
    for method in ("channel", "unstructured"):
        cells += method_cells(build_cost_model(spec.model, spec.example_input, method), QUERY[name])
    return cells


def render_times(name: str) -> list[str]:
    """AppTest wall times in s: first run (cold caches), median rerun after a slider move, the same with the
    search narrowed to one group."""
    st.cache_data.clear()
    st.cache_resource.clear()
    os.environ["PRUNELAB_MODEL"] = name
    with tempfile.TemporaryDirectory() as home:
        os.environ["PRUNELAB_HOME"] = home
        t0 = time.perf_counter()
        at = AppTest.from_file(APP, default_timeout=900).run()
        at.switch_page("app_pages/tune.py").run()  # the sliders are on the Tune page
        first = time.perf_counter() - t0
        if at.exception:
            raise SystemExit(f"{name}: the app failed: {[e.value for e in at.exception]}")
        spec = load(name)
        unit = build_cost_model(spec.model, spec.example_input, "channel").units[0].name
        slider = slider_key(name, "channel", unit)
        moves = [_timed_move(at, slider, 0.1 * (i + 1)) for i in range(RERUNS)]
        at.text_input(key="unit-search").input(QUERY[name]).run()
        unit = filter_names([u.name for u in build_cost_model(spec.model, spec.example_input, "channel").units],
                            QUERY[name])[0]
        searched = [_timed_move(at, slider_key(name, "channel", unit), 0.1 * (i + 1)) for i in range(RERUNS)]
    return [f"{first:.1f}", f"{statistics.median(moves):.2f}", f"{statistics.median(searched):.2f}"]


def _timed_move(at: AppTest, key: str, value: float) -> float:
    t0 = time.perf_counter()
    at.slider(key=key).set_value(round(value, 2)).run()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the tests run; on a shared 2-core machine two torch threads spin
    moves = {name: slider_move(name) for name in args.models}
    renders = {name: render_times(name) for name in args.models}
    lines = [
        "## Big models on the dashboard: slider moves and page renders", "",
        f"Generated by `.venv/bin/python -m bench.large_models` on {time.strftime('%Y-%m-%d')} (streamlit "
        f"{st.__version__}, torch {torch.__version__}, 1 torch thread). Reference zoo models at 224x224, random "
        f"weights, no data set. Above {FLAT_MAX} units the Tune page groups its sliders by stage or block.", "",
        "### Units (sliders) per method", "",
        "| model | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|",
        *[f"| {name} | " + " | ".join(cells[: len(METHODS)]) + " |" for name, cells in moves.items()], "",
        f"### A slider move: median of {CALLS} calls, ms", "",
        "`estimate`: CostModel.estimate after one unit's ratio changed (what every slider move recomputes); "
        "`group`: group_names over the units; `search`: filter_names narrowing to one group.", "",
        "| model | method | layout | estimate | group | search |", "|---|---|---|---|---|---|",
    ]
    for name, cells in moves.items():
        rest = cells[len(METHODS):]
        for i, method in enumerate(("channel", "unstructured")):
            lines.append(f"| {name} | {method} | " + " | ".join(rest[4 * i: 4 * i + 4]) + " |")
    lines += [
        "", "### The page (AppTest, every tab's script), s", "",
        "First run: empty caches (model load, channel tracing, baseline ONNX export and latency, channel scores "
        f"for the heatmap). Rerun: after a channel slider move, median of {RERUNS}; searched: the same with the "
        "search narrowed to one group (" + ", ".join(f"{m}: {QUERY[m]}" for m in renders) + "; fewer sliders "
        "drawn). AppTest times the script run (what Streamlit computes and sends), not the browser drawing it.",
        "",
        "| model | first run | rerun after a slider move | rerun, search narrowed |", "|---|---|---|---|",
        *[f"| {name} | " + " | ".join(cells) + " |" for name, cells in renders.items()],
    ]
    text = "\n".join(lines)
    write_section("large-models", text)
    print(text)


if __name__ == "__main__":
    main()

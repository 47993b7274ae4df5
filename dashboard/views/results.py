"""Results page: a recorded run measured against the baseline, in charts and exact figures. Runs are listed and
read from the experiment store (its record, core.store.Experiment, is what the CLI's `experiments show` prints
too); the run's folder is read only for its files (model.onnx for Netron)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import PruneConfig
from core.errors import PruneLabError
from core.experiment import finetune_verdict
from core.graph import layer_widths
from core.metric_keys import PERPLEXITY_METRIC, ModelMetrics, headline, latency_key, task_metrics
from core.recipes import describe
from core.store import Experiment, Store
from dashboard import cache, state
from dashboard.components import hardware as hardware_ui
from dashboard.components import netron
from dashboard.components.charts import accuracy_bars, compared, comparison_bars, trajectory_chart, width_chart
from dashboard.components.format import metric_row
from dashboard.components.stage_results import accuracy_metric, int8_table, stage_chart, stage_table
from dashboard.components.text import md


def recorded_runs(name: str) -> list[Experiment]:
    """The model's finished runs as the experiment store records them, newest first (a small SQLite query, read
    on every rerun so a new run shows at once); a store that cannot be opened is said on the page."""
    try:
        return Store().list(model=name, status="done")
    except PruneLabError as e:
        st.error(f"The experiment store cannot be read: {md(e)}", icon=":material/error:")
        return []


def pick_run(name: str, key: str) -> Experiment | None:
    """A selectbox over the model's recorded runs (newest first), defaulting to the session's last run."""
    saved = recorded_runs(name)
    if not saved:
        st.info("No runs yet for this model: set ratios on the Tune page and press “Apply and measure”.")
        return None
    ids = [r.id for r in saved]
    state.follow_announced(key, ids)  # a run this session just made: show it once, then let go
    wanted = state.selected_run()
    index = ids.index(wanted) if wanted in ids else 0
    chosen = st.selectbox("Run", ids, index=index, key=key,
                          format_func=lambda rid: _label(next(r for r in saved if r.id == rid)))
    state.select_run(chosen)
    return next(r for r in saved if r.id == chosen)


def _label(run: Experiment) -> str:
    pruned = run.metrics["pruned"]
    epochs = sum(s.finetune.epochs for s in run.config.stages())  # a recipe's: every stage's
    perplexity = pruned.get(PERPLEXITY_METRIC.key)
    if perplexity is not None:  # a language model: its headline
        return f"{run.id} · {epochs} ep · ppl {PERPLEXITY_METRIC.show(perplexity)}"
    acc = pruned.get("accuracy")
    return f"{run.id} · {epochs} ep · acc " + ("n/a" if acc is None else f"{100 * acc:.2f}%")


def _table(base: dict, pruned: dict) -> pd.DataFrame:
    rows = [(label + (f" ({unit})" if unit else ""), base[k], pruned[k], pruned[k] / base[k] if base[k] else None)
            for k, label, unit in compared(base, pruned)]
    for task in task_metrics(base):  # accuracy, or a language model's perplexity and next-token accuracy, ...
        if base.get(task.key) is not None:
            value = pruned.get(task.key)
            rows.append((task.label, base[task.key], value, value / base[task.key] if value is not None else None))
    return pd.DataFrame(rows, columns=["metric", "baseline", "pruned", "pruned / baseline"])


def _load_ratios(name: str, method: str, ratios: dict[str, float], batch: int) -> None:
    """on_click: the aligned ratios (fast widths of the width table at `batch`) into the Tune sliders: the
    hardware-aware ones while that table is on disk (they keep those widths exactly), else the plain ones."""
    units = {u.name: u for u in cache.cost_model(name, method).units}
    measured = hardware_ui.table(name, batch)
    state.load_settings({state.HW_AWARE: measured is not None, state.HW_BATCH: batch})
    state.TuneState(name, method).set_sliders({u: ratios.get(u, 0.0) for u in units}, units, measured)


def _graph(name: str, run: Experiment) -> None:
    """What changed in the network: every layer's width (always), and the exported graph in Netron."""
    st.markdown("#### The pruned network")
    spec = cache.spec(name)
    technique = run.config.technique
    # the units widths are cut by (neuron units are channel groups; head units are attention modules)
    units = list(cache.cost_model(name, technique.width_units or "channel").units)
    ratios = run.config.ratios if technique.width_units else {}
    st.plotly_chart(width_chart(layer_widths(spec.model, units, ratios)), width="stretch", key=state.WIDTH_CHART)
    if note := technique.what_changed(run.metrics.get("removed", {}), run.config.remove_blocks):
        st.caption(md(note))
    if run.config.then:
        st.caption(f"A recipe: the widths above are stage 1's cut ({run.config.method}); what every stage left is "
                   "measured in the stage table above.")
    onnx = run.file("model.onnx")
    if error := run.metrics["pruned"].get("onnx_error"):
        st.info(f"No exported graph: {md(error)}. The figures above are measured in torch.")
    elif onnx is None:
        st.info(f"No exported graph here: no model.onnx in a run folder of this workspace ({md(run.folder)}).")
    elif st.toggle("Show the exported graph in Netron", key=state.NETRON_ON):
        netron.embed(onnx)


def schedule_text(config: PruneConfig) -> str:
    """The schedule and fine-tuning options of a config in words, for captions."""
    sched, ft = config.schedule, config.finetune
    text = {"oneshot": "one-shot",
            "iterative": f"iterative, {sched.steps} steps along the {sched.curve} curve"
                         + (f", {sched.last_round:.0%} of the budget after the last cut" if sched.last_round else ""),
            "dynamic": f"dynamic, masks updated every {sched.update_every} optimiser steps along the {sched.curve} "
                       "curve",
            }[sched.kind]
    text += f"; {ft.epochs} fine-tuning epoch{'s' if ft.epochs != 1 else ''}"
    if ft.epochs:
        text += f" ({describe(ft)})"
    if ft.distill:
        text += f", distilled (T {ft.temperature:g}, alpha {ft.alpha:g})"
    if ft.rewind:
        text += ", lottery-ticket rewind"
    return text


def _stages(run: Experiment, points: list[dict]) -> None:
    """A recipe's measurements stage by stage: the chart with a band per stage, and each stage's figures after its
    pruning and after its fine-tuning (the run's headline metric, core.metric_keys); int8, when it followed the last
    stage, as the table's last row."""
    st.markdown("#### Stage by stage")
    metric = headline(run.metrics["baseline"])
    int8 = run.metrics.get("int8")
    st.plotly_chart(stage_chart(points, run.config, metric), width="stretch", key=state.TRAJECTORY_CHART)
    st.dataframe(stage_table(points, run.config, metric, int8, run.metrics["pruned"],
                             accuracy_metric(run.metrics["baseline"])), hide_index=True, width="stretch")
    better = "higher" if metric.higher_is_better else "lower"
    st.caption(f"Measured after each stage's pruning and fine-tuning ({metric.label}: {better} is better). "
               + "; ".join(f"Stage {k} ({s.method}): {schedule_text(s)}" for k, s in enumerate(run.config.stages(), 1))
               + ".")
    if int8:
        st.caption(f"Last row: the model the last stage left, quantised to int8 and measured as such "
                   f"({md(int8['how'])}); the row above it has the float model's ONNX bytes and batch-1 latency "
                   "(onnxruntime median).")


def _int8(run: Experiment) -> None:
    """A single-method run quantised after its cut: the float32 pruned model against its int8 file, as measured."""
    int8 = run.metrics.get("int8")
    if not int8 or run.config.then:  # a recipe's int8 is its stage table's last row
        return
    st.markdown("#### float32 vs int8")
    st.dataframe(int8_table(run.metrics["pruned"], int8, accuracy_metric(run.metrics["baseline"])), hide_index=True,
                 width="stretch")
    st.caption(f"Both measured on their ONNX files, latency as the onnxruntime median: {md(int8['how'])}. The int8 "
               "file is model.int8.onnx (Export and Experiments hand it out).")


def _trajectory(run: Experiment) -> None:
    """The schedule's measurements step by step, when there is more than before and after (a recipe's always)."""
    points = run.metrics.get("trajectory") or []
    if run.config.then and points:
        _stages(run, points)
        return
    if len(points) <= 2:
        return
    st.markdown("#### Along the schedule")
    mask = run.config.technique.mask
    st.plotly_chart(trajectory_chart(points, mask), width="stretch", key=state.TRAJECTORY_CHART)
    st.caption(f"Measured after every pruning step and fine-tuning round ({schedule_text(run.config)}); test "
               f"accuracy against the {'non-zero ' if mask else ''}parameters left.")


RETIMED_DIFFERS = 0.10  # relative difference of a baseline latency between Model and Results worth explaining


def _baseline_note(name: str, base: dict) -> None:
    """Say that the run timed its baseline again, beside the pruned model; where that figure differs from the
    Model page's (timed alone, at another moment) by more than RETIMED_DIFFERS, show both."""
    model_page = cache.baseline(name).metrics
    differ = []
    for batch in ModelMetrics.from_dict(base).latency_batches:
        key = latency_key(batch)
        here, there = base.get(key), model_page.get(key)
        if here and there and abs(here / there - 1) > RETIMED_DIFFERS:
            differ.append(f"b{batch} {here:.3g} ms here, {there:.3g} ms on the Model page")
    text = ("The baseline's latency here was timed with the run, beside the pruned model, under the same load, so "
            "the two compare fairly; the Model page times the baseline alone.")
    if differ:
        st.info(f"{text} They differ ({'; '.join(differ)}): the machine's load changed between the two timings. "
                "Compare the pruned model with this run's baseline.")
    else:
        st.caption(text)


def render(name: str) -> None:
    run = pick_run(name, key=state.RESULTS_RUN)
    if run is None:
        return
    base, pruned = run.metrics["baseline"], run.metrics["pruned"]
    metric_row(pruned, base)
    _baseline_note(name, base)
    c1, c2 = st.columns([3, 1])
    c1.plotly_chart(comparison_bars(base, pruned), width="stretch", key=state.COMPARE_CHART)
    c2.plotly_chart(accuracy_bars(base, pruned), width="stretch", key=state.ACCURACY_CHART)
    st.dataframe(_table(base, pruned), hide_index=True, width="stretch")
    if verdict := finetune_verdict(pruned):
        st.warning(f"{verdict[0].upper()}{verdict[1:]}.")  # core's sentence: our own figures only
    if clamped := run.metrics.get("clamped"):
        st.warning(f"These ratios would have emptied {md(', '.join(clamped))}: one weight, channel or head was kept in "
                   "each.")
    if alt := run.metrics.get("aligned_alternative"):
        st.warning(f"Some kept widths are slow on this runtime: snapping them to the nearest fast widths measured "
                   f"{alt['speedup']:.2f}x faster at batch {alt['batch']} ({alt['latency_ms']:.3g} vs "
                   f"{alt['config_latency_ms']:.3g} ms).")
        st.button("Load the aligned ratios into the Tune sliders", key=state.LOAD_ALIGNED, on_click=_load_ratios,
                  args=(name, run.config.method, alt["ratios"], alt["batch"]))
    _trajectory(run)
    _int8(run)
    _graph(name, run)
    if (prediction := run.metrics.get("prediction")) and pruned.get("accuracy") is not None:
        c1, c2, c3 = st.columns(3)
        c1.metric("Predicted accuracy", f"{100 * prediction['accuracy']:.2f}%", help=md(prediction["method"]))
        c2.metric("Measured accuracy", f"{100 * pruned['accuracy']:.2f}%",
                  f"{100 * (pruned['accuracy'] - prediction['accuracy']):+.2f} pts vs predicted")
        c3.caption(f"Fine-tuning epochs: {run.config.finetune.epochs}. The prediction ignores fine-tuning and "
                   "interactions between layers.")
    config = run.config
    ranked = f"criterion {config.criterion}" if config.technique.uses_criterion else "blocks chosen on the Tune page"
    st.caption(f"All figures measured: latency in {md(pruned['runtime'])}, {md(pruned['latency_threads'])} thread(s), "
               "median and p90 over repeated runs after warm-up (eager torch timed alike, for comparison). Method: "
               f"{config.methods_text()}, {ranked}, seed {config.seed}; schedule: "
               + ("each stage's, above." if config.then else f"{schedule_text(config)}."))

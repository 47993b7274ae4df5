"""Sensitivity page: how much accuracy each layer / channel group costs at each ratio, and what its
pruning buys (share of params, FLOPs and measured latency)."""

from __future__ import annotations

import streamlit as st

from core import methods
from core.importance import REGISTRY
from core.metric_keys import PERPLEXITY_METRIC, sweep_metric
from core.workflows import defaults
from dashboard import cache, jobs, state
from dashboard.components.charts import sensitivity_heatmap, unit_cost_bars
from dashboard.components.heat_controls import grouped_view, handle_pick
from dashboard.components.sweeps import GRID_CHOICES, cached_table, current_spec, restore_last
from dashboard.components.text import md
from dashboard.components.training import missing_training_data


def _controls() -> None:
    c = st.columns([1.2, 1.2, 2.4, 1, 1, 0.8])
    swept = sorted((n for n, m in methods.REGISTRY.items() if m.swept), key=lambda n: methods.get(n).mask)
    c[0].radio("Granularity", swept, key=state.SENS_GRANULARITY,  # structural first: what a sweep is most often for
               help="\n".join(f"- **{n}**: one unit at a time; {methods.get(n).help}" for n in swept))
    c[1].selectbox("Criterion", list(REGISTRY), key=state.SENS_CRITERION, format_func=lambda k: REGISTRY[k].label,
                   help="Decides which channels / weights go first at each ratio.")
    state.default_sweep_settings({"grid": list(defaults.SWEEP_GRID), "eval_samples": defaults.SWEEP_EVAL_SAMPLES,
                                  "calibration_samples": defaults.SWEEP_CALIBRATION_SAMPLES,
                                  "seed": defaults.SWEEP_SEED})  # before the controls are drawn
    c[2].multiselect("Ratios", GRID_CHOICES, key=state.SENS_GRID, help="The fractions removed, one column each.")
    c[3].number_input("Eval images", 50, 5000, step=50, key=state.SENS_EVAL,
                      help="Training images not used for calibration; the test set stays untouched.")
    c[4].number_input("Calibration images", 16, 4000, step=16, key=state.SENS_CALIB,
                      help="For BatchNorm re-estimation and gradient / activation criteria.")
    c[5].number_input("Seed", 0, 2**31 - 1, key=state.SENS_SEED)


def _launch(name: str) -> None:
    jobs.start("sweep", name, sweep_spec=current_spec(name))


def render(name: str) -> None:
    spec = cache.spec(name)
    if not spec.has_data:
        st.info(f"{name} has no data set (random weights, for size and latency work): sensitivity sweeps measure "
                "accuracy and are not available for it. The Tune page's estimates and hardware-aware widths are.")
        return
    if missing := missing_training_data(spec, "a sensitivity sweep", cache.display_name(name)):
        st.info(f"{md(missing)}. The Tune page's estimates and hardware-aware widths work without it.")
        return
    restore_last(name)  # a refresh: the settings of the sweep it shows
    _controls()
    sweep_spec = current_spec(name)
    _, error = jobs.panel("sweep", name)
    if error:
        st.error(f"The sweep failed: {md(error)}")
    table = cached_table(sweep_spec)
    if table is None:
        shrinks = not methods.get(sweep_spec.granularity).mask  # shrinking sweeps cut coupled channel groups
        st.info(f"Not measured yet: the sweep prunes one {'channel group' if shrinks else 'layer'} at a time at "
                f"each ratio{' (then re-estimates BatchNorm)' if shrinks else ''} and "
                f"measures accuracy on {sweep_spec.eval_samples:,} {_examples(name)}. Results are cached on disk.")
        st.button("Run sensitivity sweep", type="primary", key=state.RUN_SWEEP, disabled=jobs.running("sweep", name),
                  on_click=_launch, args=(name,))
        return
    base = (f"baseline perplexity there {table['base_perplexity'].iloc[0]:.3f}, next-token accuracy "
            if sweep_metric(table.columns) is PERPLEXITY_METRIC else "baseline accuracy there ")
    st.caption(f"Measured on {sweep_spec.eval_samples:,} training {_examples(name)} the calibration step did not use "
               f"({base}{table['base_accuracy'].iloc[0]:.4f}); read from the cache.")
    # a language model's perplexity increase first (lower perplexity is better): what its solver minimises
    lm = {"perplexity increase": PERPLEXITY_METRIC.change_name} if sweep_metric(table.columns) is PERPLEXITY_METRIC \
        else {}
    shown = {**lm, "accuracy drop": "accuracy_drop", "loss increase": "loss_increase"}
    metric = st.radio("Show", list(shown), horizontal=True, key=state.SENS_METRIC)
    column = shown[metric]
    grouped = grouped_view(table["unit"].nunique(), state.SENS_DETAIL)
    event = st.plotly_chart(sensitivity_heatmap(table, column, grouped), width="stretch", key=state.SENS_HEATMAP,
                            on_select="rerun", selection_mode="points")
    handle_pick(event, grouped, state.SENS_HEATMAP)
    st.markdown("#### What pruning each buys")
    st.plotly_chart(unit_cost_bars(cache.unit_costs(name, sweep_spec.granularity)), width="stretch",
                    key=state.UNIT_COSTS)
    st.caption("Share of parameters, FLOPs and measured onnxruntime kernel time (batch 32, profiler, unfused "
               "graph) in the layers whose outputs each unit cuts.")


def _examples(name: str) -> str:
    """What one evaluation example is: an image, or a language model's window of text."""
    split = cache.spec(name).split
    return "windows of text" if split is not None and split.train_y.dim() > 1 else "images"

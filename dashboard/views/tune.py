"""Tune page: method, per-layer ratio sliders with live estimates, then apply + fine-tune + measure."""

from __future__ import annotations

import streamlit as st

from core import experiment, runs
from core.allocate import drop_curves, predicted_drop
from core.config import FinetuneConfig, PruneConfig
from core.errors import PruneLabError
from core.graph import kept_channels
from core.importance import REGISTRY
from dashboard import cache, jobs
from dashboard.components import hardware as hardware_ui
from dashboard.components.charts import estimate_bars
from dashboard.components.format import human, latency_key
from dashboard.components.sliders import ratio_sliders, slider_key
from dashboard.components.solver import solver_panel
from dashboard.components.sweeps import cached_table, current_spec

METHOD_HELP = (
    "channel: removes whole filters/channels (with everything coupled to them) — the model really gets "
    "smaller and faster. unstructured: zeroes individual small weights through masks — same dense size "
    "and speed; only sparse formats or sparse kernels can profit."
)


def _prediction(name: str, method: str, criterion: str, ratios: dict[str, float]) -> dict | None:
    """Test accuracy predicted from the sensitivity sweep (if one is cached for this method/criterion)."""
    if not cache.spec(name).has_data:
        return None
    sweep_spec = current_spec(name, method, criterion)
    table = cached_table(sweep_spec)
    if table is None:
        return None
    base = cache.baseline(name).metrics["accuracy"]
    drop = predicted_drop(drop_curves(table), ratios)
    return {"accuracy": max(0.0, base - drop), "drop": drop, "sweep": sweep_spec.key(),
            "method": "baseline test accuracy minus the sum of single-unit drops of the sensitivity sweep; "
                      "before fine-tuning"}


def _estimates(base: dict, est: dict, prediction: dict | None, has_data: bool) -> None:
    cols = st.columns(5)
    shown = [("params", "Parameters", ""), ("nonzero_params", "Non-zero params", ""),
             ("flops", "FLOPs / image", ""), ("size_bytes", "fp32 size", "B")]
    for col, (key, label, unit) in zip(cols[:4], shown, strict=True):
        pct = 100 * (est[key] / base[key] - 1) if base[key] else 0.0
        col.metric(f"{label} (estimate)", human(est[key], unit), f"{pct:+.1f}%" if abs(pct) >= 0.05 else None,
                   delta_color="inverse")
    if prediction:
        cols[4].metric("Accuracy (predicted)", f"{100 * prediction['accuracy']:.2f}%",
                       f"{-100 * prediction['drop']:+.2f} pts", help=prediction["method"])
    elif has_data:
        cols[4].caption("Run a sensitivity sweep for this method and criterion to see a predicted accuracy.")
    else:
        cols[4].caption("Accuracy n/a: this model has no data set (random weights).")


def _latency_estimate(name: str, lut, model_cost, ratios: dict[str, float]) -> None:
    """The measured baseline latency minus what the width-latency table says each unit saves."""
    metrics = cache.baseline(name).metrics
    base_ms = metrics[latency_key(lut.batch)]
    units = {u.name: u for u in model_cost.units}
    saved = sum(lut.saving(u, kept_channels(units[u], r)) for u, r in ratios.items())
    est = max(base_ms - saved, 0.0)
    pct = 100 * (est / base_ms - 1)
    st.metric(f"Latency at batch {lut.batch} (estimate from the width table)", f"{est:.3g} ms",
              f"{pct:+.1f}%" if abs(pct) >= 0.05 else None, delta_color="inverse",
              help="Baseline measured latency minus each unit's measured one-layer savings; the real figure "
                   "comes with Apply and measure.")


def _launch(name: str, config: PruneConfig, prediction: dict | None, lut=None) -> None:
    spec, base = cache.spec(name), cache.baseline(name)

    def work(progress) -> str:
        out = experiment.run(spec, config, progress, base=base, hardware=lut)
        out.prediction = prediction
        run_dir = runs.new_run_dir(name, config.method)
        out.write(run_dir)
        return run_dir.name

    jobs.start("job", work)


def render(name: str) -> None:
    spec = cache.spec(name)
    c1, c2 = st.columns([2, 1])
    method = c1.radio("Method", ["channel", "unstructured"], horizontal=True, key="method", help=METHOD_HELP)
    criterion = c2.selectbox("Criterion", list(REGISTRY), key="criterion", format_func=lambda c: REGISTRY[c].label,
                             help="What ranks weights or channels for removal (lowest first).")
    model_cost = cache.cost_model(name, method)
    lut = None
    if method == "channel":
        hardware_ui.apply_solution(name, slider_key)  # before any widget it sets is drawn
        lut = hardware_ui.panel(name)
    solver_panel(name, method, criterion, lut)
    st.markdown("#### Ratio removed per " + ("coupled channel group" if method == "channel" else "layer"))
    ratios = ratio_sliders(name, method, model_cost.units, focus=st.session_state.get("focus"), table=lut,
                           snap=method == "channel" and st.session_state.get("hw-aware", False))
    prediction = _prediction(name, method, criterion, ratios)

    base_est, est = model_cost.estimate({}), model_cost.estimate(ratios)
    st.markdown("#### Estimate")
    _estimates(base_est, est, prediction, spec.has_data)
    if lut is not None:
        _latency_estimate(name, lut, model_cost, ratios)
    st.plotly_chart(estimate_bars(base_est, est), width="stretch", key="estimate-chart")
    st.caption("Estimates come from layer shapes and channel coupling (exact for conv, linear and norm layers); "
               "nothing is pruned until you apply. Latency and accuracy are only shown once measured.")
    if method == "unstructured":
        st.info("Masks zero weights but keep every tensor dense: file size, dense FLOPs and latency stay the "
                "same. Sparse-effective FLOPs show what sparse kernels could skip at best.")

    st.markdown("#### Apply, fine-tune, measure")
    c1, c2, c3 = st.columns(3)
    epochs = c1.number_input("Fine-tune epochs", 0, 20, 1 if spec.has_data else 0, key="epochs",
                             disabled=not spec.has_data,
                             help="SGD with momentum, warm-up then cosine decay; 0 skips fine-tuning."
                             + ("" if spec.has_data else " Not available: this model has no data set."))
    lr = c2.number_input("Peak learning rate", 0.0001, 1.0, 0.01, format="%.4f", key="lr")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    if st.button("Apply and measure", type="primary", key="apply", disabled=jobs.running("job")):
        try:
            config = PruneConfig(model=name, method=method, ratios={k: v for k, v in ratios.items() if v > 0},
                                 criterion=criterion, model_fingerprint=spec.fingerprint, seed=int(seed),
                                 finetune=FinetuneConfig(epochs=int(epochs), lr=float(lr)))
            _launch(name, config, prediction, lut)
        except PruneLabError as e:
            st.error(str(e))
    run_id, error = jobs.panel("job")
    if error:
        st.error(f"The run failed: {error}")
    elif run_id:
        if st.session_state.get("announced") != run_id:  # select a new run once, then let the user choose
            st.session_state["announced"] = st.session_state["selected_run"] = run_id
        st.success(f"Run {run_id} measured and saved — open the Results and Export tabs.")

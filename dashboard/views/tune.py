"""Tune page: method, per-layer ratio sliders with live estimates, then apply + fine-tune + measure."""

from __future__ import annotations

import streamlit as st

from core import experiment, runs
from core.config import FinetuneConfig, PruneConfig
from core.errors import PruneLabError
from core.importance import REGISTRY
from dashboard import cache, jobs
from dashboard.components.charts import estimate_bars
from dashboard.components.format import human
from dashboard.components.sliders import ratio_sliders

METHOD_HELP = (
    "channel: removes whole filters/channels (with everything coupled to them) — the model really gets "
    "smaller and faster. unstructured: zeroes individual small weights through masks — same dense size "
    "and speed; only sparse formats or sparse kernels can profit."
)


def _estimates(base: dict, est: dict) -> None:
    cols = st.columns(4)
    for col, (key, label, unit) in zip(cols, [("params", "Parameters", ""), ("nonzero_params", "Non-zero params", ""),
                                              ("flops", "FLOPs / image", ""), ("size_bytes", "fp32 size", "B")],
                                       strict=True):
        pct = 100 * (est[key] / base[key] - 1) if base[key] else 0.0
        col.metric(f"{label} (estimate)", human(est[key], unit), f"{pct:+.1f}%", delta_color="inverse")


def _launch(name: str, config: PruneConfig) -> None:
    spec, base = cache.spec(name), cache.baseline(name)

    def work(progress) -> object:
        out = experiment.run(spec, config, progress, base=base)
        run_dir = runs.new_run_dir(name, config.method)
        out.write(run_dir)
        return run_dir

    st.session_state.pop("job_done", None)
    st.session_state["job"] = jobs.start(work)


@st.fragment(run_every=0.5)
def _job_panel() -> None:
    """Progress of the running job; when it ends, select its run and redraw the whole app."""
    job = st.session_state.get("job")
    if job is None:  # finished in an earlier poll
        return
    if not job.finished:
        st.progress(job.fraction, text=f"{job.stage} ({job.done}/{job.total})")
        return
    st.session_state["job"] = None
    if job.error:
        st.session_state["job_error"] = job.error
    else:
        st.session_state["selected_run"] = job.run_dir.name
        st.session_state["job_done"] = job.run_dir.name
    st.rerun()


def render(name: str) -> None:
    spec = cache.spec(name)
    c1, c2 = st.columns([2, 1])
    method = c1.radio("Method", ["channel", "unstructured"], horizontal=True, key="method", help=METHOD_HELP)
    criterion = c2.selectbox("Criterion", list(REGISTRY), key="criterion", format_func=lambda c: REGISTRY[c].label,
                             help="What ranks weights or channels for removal (lowest first).")
    model_cost = cache.cost_model(name, method)
    st.markdown("#### Ratio removed per " + ("coupled channel group" if method == "channel" else "layer"))
    ratios = ratio_sliders(name, method, model_cost.units)

    base_est, est = model_cost.estimate({}), model_cost.estimate(ratios)
    st.markdown("#### Estimate")
    _estimates(base_est, est)
    st.plotly_chart(estimate_bars(base_est, est), width="stretch", key="estimate-chart")
    st.caption("Estimates come from layer shapes and channel coupling (exact for conv, linear and norm layers); "
               "nothing is pruned until you apply. Latency and accuracy are only shown once measured.")
    if method == "unstructured":
        st.info("Masks zero weights but keep every tensor dense: file size, dense FLOPs and latency stay the "
                "same. Sparse-effective FLOPs show what sparse kernels could skip at best.")

    st.markdown("#### Apply, fine-tune, measure")
    c1, c2, c3 = st.columns(3)
    epochs = c1.number_input("Fine-tune epochs", 0, 20, 1, key="epochs",
                             help="SGD with momentum, warm-up then cosine decay; 0 skips fine-tuning.")
    lr = c2.number_input("Peak learning rate", 0.0001, 1.0, 0.01, format="%.4f", key="lr")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    busy = st.session_state.get("job") is not None
    if st.button("Apply and measure", type="primary", key="apply", disabled=busy):
        try:
            config = PruneConfig(model=name, method=method, ratios={k: v for k, v in ratios.items() if v > 0},
                                 criterion=criterion, model_fingerprint=spec.fingerprint, seed=int(seed),
                                 finetune=FinetuneConfig(epochs=int(epochs), lr=float(lr)))
            _launch(name, config)
        except PruneLabError as e:
            st.error(str(e))
    if st.session_state.get("job") is not None:  # poll only while something runs
        _job_panel()
    if msg := st.session_state.pop("job_error", None):
        st.error(f"The run failed: {msg}")
    if run_id := st.session_state.get("job_done"):  # stays until the next run starts
        st.success(f"Run {run_id} measured and saved — open the Results and Export tabs.")

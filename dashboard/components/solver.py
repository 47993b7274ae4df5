"""The budget-solver panel of the Tune page: a target and bounds in, slider values out."""

from __future__ import annotations

import streamlit as st

from core import methods
from core.allocate import Target
from core.errors import PruneLabError
from core.workflows import SolveRequest, solve
from dashboard import cache, state
from dashboard.components import hardware as hardware_ui
from dashboard.components import messages
from dashboard.components.sweeps import cached_table, current_spec
from dashboard.state import MAX_RATIO, SOLVER_MESSAGE

STRATEGIES = ["sensitivity", "global", "uniform"]
DEFAULT = SolveRequest(Target("flops", 2.0))  # the solver's defaults (core.workflows.solve), as the CLI's
TARGET_LABELS = {"flops": "FLOPs: x times fewer", "params": "Parameters: x times fewer",
                 "size_mb": "fp32 size at most (MB)", "latency_ms": "Latency b1 at most (ms, estimate)",
                 "speedup": "Speed-up: x times faster (estimate)"}


def _solve(name: str, method: str, criterion: str, lut, hf: bool = False) -> None:
    """on_click callback: runs before the sliders are drawn, so it may set their values. hf: HF-compatible mode
    (core.workflows.solve: uniform over the layer stack, no locks, plain sliders)."""
    settings = state.solver_settings()
    tune = state.TuneState(name, method)
    widths = lut is not None and methods.get(method).hardware_aware and not hf  # a width-latency table applies
    hardware_aware = widths and settings.hardware_aware
    shown_hw = widths and state.hw_aware()  # which sliders show
    try:
        cm = cache.cost_model(name, method)
        locked = {} if hf else {u: tune.slider(u, hw=shown_hw) for u in settings.locked}
        sweep_spec = current_spec(name, method, criterion)
        request = SolveRequest(Target(settings.target, settings.value), "uniform" if hf else settings.strategy,
                               method, criterion, settings.low, settings.high, locked,
                               cached_table(sweep_spec), sweep_spec.calibration_samples, sweep_spec.seed,
                               latency_batch=lut.batch if hardware_aware else 1, hardware_aware=hardware_aware,
                               hf_compatible=hf)
        scores = (cache.raw_scores(name, method, criterion, sweep_spec.calibration_samples, sweep_spec.seed)
                  if request.strategy == "global" else None)
        if hardware_aware:  # builds and times candidate models: a background job fills the sliders later
            hardware_ui.solve_in_background(name, request, scores, lut)
            messages.say(SOLVER_MESSAGE, name, "info", "Timing hardware-aware candidates in the background…")
            return
        result = solve(cache.spec(name), request, cost_model=cm, scores=scores,
                       base=cache.baseline(name)).allocation
    except PruneLabError as e:
        messages.say(SOLVER_MESSAGE, name, "error", str(e))
        return
    units = {u.name: u for u in cm.units}
    # the one slider writer: capped at MAX_RATIO, or (hardware-aware sliders) the fast width at or below
    tune.set_sliders(result.ratios, units, lut if shown_hw else None)
    mean = tune.show_mean(list(units), hw=bool(shown_hw))
    verdict = "met" if result.met else "NOT met within the bounds (closest shown)"
    filled = "Sliders filled, every layer alike" if hf else f"Sliders filled (All layers shows their mean, {mean:.2f})"
    messages.say(SOLVER_MESSAGE, name, "success" if result.met else "warning",
                 f"{result.strategy} allocation: target {verdict}. {filled}; adjust by hand.")


def solver_panel(name: str, method: str, criterion: str, lut=None, hf: bool = False) -> None:
    """hf: HF-compatible mode — one ratio for every layer (the uniform strategy), no locks, no hardware-aware solve."""
    with st.expander("Budget solver: fill the sliders for a target", expanded=False):
        c = st.columns([2, 1, 1.4, 1, 1])
        c[0].selectbox("Target", list(TARGET_LABELS), key=state.SOLVER_TARGET, format_func=TARGET_LABELS.get)
        c[1].number_input("Value", 0.001, 1e6, DEFAULT.target.value, key=state.SOLVER_VALUE)
        has_sweep = cached_table(current_spec(name, method, criterion)) is not None
        default = "sensitivity" if has_sweep else "global"  # global needs no sweep: a first solve works
        if hf:  # a per-layer strategy gives layers different widths, which no HF config holds
            c[2].caption("Strategy: uniform (HF-compatible: the same ratio in every layer)")
        else:
            c[2].selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(default), key=state.SOLVER_STRATEGY,
                           help="sensitivity: least predicted accuracy drop from the sweep; global: one importance "
                                "threshold across layers; uniform: the same ratio everywhere")
        c[3].number_input("Min ratio", 0.0, MAX_RATIO, DEFAULT.min_ratio, 0.05, key=state.SOLVER_MIN)
        c[4].number_input("Max ratio", 0.0, MAX_RATIO, DEFAULT.max_ratio, 0.05, key=state.SOLVER_MAX)
        units = [u.name for u in cache.cost_model(name, method).units]
        st.multiselect("Locked (keep their current slider value)", units, key=state.SOLVER_LOCKED, disabled=hf,
                       help="HF-compatible mode locks nothing: every layer takes the same ratio." if hf else None)
        if lut is not None and methods.get(method).hardware_aware and not hf:
            st.checkbox("Hardware-aware: keep fast widths, choose the alignment by timing whole models",
                        key=state.SOLVER_HW)
        st.button("Solve and fill the sliders", key=state.SOLVE, on_click=_solve,
                  args=(name, method, criterion, lut, hf))
        if not has_sweep and not hf:  # HF-compatible mode solves uniformly: no sweep needed
            where = ("run one on the Sensitivity page" if cache.spec(name).has_data
                     else "sweeps measure accuracy and this model has no data set")
            st.caption(f"The sensitivity strategy needs a sensitivity sweep for this method and criterion ({where}): "
                       "until then the solver starts on global (one importance threshold across layers).")
        messages.show(SOLVER_MESSAGE, name)

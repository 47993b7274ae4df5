"""Tune page: which pruning to use (the decision guide), method and its controls with live estimates,
schedule and fine-tuning, then apply + measure."""

from __future__ import annotations

import hashlib

import streamlit as st

from core import methods as registry
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.errors import PruneLabError
from core.importance import REGISTRY
from core.workflows import baseline_latency_ms, defaults, estimate_latency, predict_accuracy
from dashboard import cache, jobs, state
from dashboard.components import criteria, hf_mode, locks, methods, stages, strategy_helper
from dashboard.components import hardware as hardware_ui
from dashboard.components import quantize as quantize_ui
from dashboard.components import repair as repair_ui
from dashboard.components.charts import estimate_bars
from dashboard.components.format import human
from dashboard.components.solver import solver_panel
from dashboard.components.sweeps import cached_table, current_spec
from dashboard.components.text import md
from dashboard.components.training import Training, options


def _prediction(name: str, method: str, criterion: str, ratios: dict[str, float]) -> dict | None:
    """Test accuracy predicted from the sensitivity sweep (if one is cached for this method/criterion)."""
    if not cache.spec(name).has_data or not registry.get(method).swept:
        return None
    sweep_spec = current_spec(name, method, criterion)
    base = cache.baseline(name).metrics
    return predict_accuracy(cached_table(sweep_spec), ratios, base["accuracy"], sweep_spec.key(),
                            base_perplexity=base.get("perplexity"))  # a language model's headline


def _estimates(base: dict, est: dict, prediction: dict | None, has_data: bool, method: str) -> None:
    cols = st.columns(5)
    shown = [("params", "Parameters", ""), ("nonzero_params", "Non-zero params", ""),
             ("flops", "FLOPs / image", ""), ("size_bytes", "fp32 size", "B")]
    for col, (key, label, unit) in zip(cols[:4], shown, strict=True):
        pct = 100 * (est[key] / base[key] - 1) if base[key] else 0.0
        col.metric(f"{label} (estimate)", human(est[key], unit), f"{pct:+.1f}%" if abs(pct) >= 0.05 else None,
                   delta_color="inverse")
    if prediction and prediction.get("perplexity") is not None:  # a language model: lower is better
        cols[4].metric("Perplexity (predicted)", f"{prediction['perplexity']:.3f}",
                       f"{prediction['perplexity_increase']:+.3f}", delta_color="inverse",
                       help=f"{prediction['method']}; next-token accuracy {100 * prediction['accuracy']:.2f}%")
    elif prediction:
        cols[4].metric("Accuracy (predicted)", f"{100 * prediction['accuracy']:.2f}%",
                       f"{-100 * prediction['drop']:+.2f} pts", help=prediction["method"])
    elif has_data and registry.get(method).swept:
        cols[4].caption("Run a sensitivity sweep for this method and criterion to see a predicted accuracy.")
    elif has_data:
        swept = " and ".join(n for n, m in registry.REGISTRY.items() if m.swept)
        cols[4].caption(f"Accuracy is measured by Apply (sensitivity sweeps cover {swept}).")
    else:
        cols[4].caption("Accuracy n/a: this model has no data set (random weights).")


def _latency_estimate(name: str, lut, model_cost, ratios: dict[str, float]) -> None:
    """The measured baseline latency minus what the width-latency table says each unit saves (core.workflows)."""
    base_ms = baseline_latency_ms(cache.spec(name), lut.batch, cache.baseline(name))
    est = estimate_latency(model_cost, base_ms, ratios, lut)
    pct = 100 * (est / base_ms - 1)
    st.metric(f"Latency at batch {lut.batch} (estimate from the width table)", f"{est:.3g} ms",
              f"{pct:+.1f}%" if abs(pct) >= 0.05 else None, delta_color="inverse",
              help="Baseline measured latency minus each unit's measured one-layer savings; the real figure "
                   "comes with Apply and measure.")


def _launch(name: str, config: PruneConfig, prediction: dict | None, lut=None) -> None:
    """Start the run in a worker; runs of different configs may go side by side (one slot per config), and this
    session remembers which is its own."""
    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:16]
    state.set_own_run(name, key)
    jobs.start("run", name, key, config=config, prediction=prediction, base=cache.baseline(name), lut=lut)


def _method_and_criterion(has_data: bool) -> tuple[str, str]:
    """The method radio (a one-line help for each: all in its tooltip, the chosen one below it) and the
    criteria that method can use (those needing data only for a model with data)."""
    c1, c2 = st.columns([3, 1])
    names = registry.names()
    method = c1.radio("Method", names, index=names.index(defaults.METHOD), horizontal=True, key=state.METHOD,
                      help="\n".join(f"- **{m}**: {registry.get(m).help}" for m in names))
    c1.caption(f"**{method}**: {registry.get(method).help}")
    technique = registry.get(method)
    if not technique.uses_criterion:
        c2.caption(technique.ranking)
        return method, technique.criteria()[0]  # unused by the method; the one it accepts
    allowed = criteria.offered(technique.criteria(), has_data)
    criteria.keep_offered(state.CRITERION, allowed)  # before the widget: it may only offer these
    criterion = c2.selectbox("Criterion", allowed, key=state.CRITERION, format_func=lambda c: REGISTRY[c].label,
                             help="What ranks weights, channels or heads for removal (lowest first)."
                                  + criteria.note(has_data))
    return method, criterion


def _estimate_section(name: str, method: str, criterion: str, choice: methods.Choice, lut) -> dict | None:
    """Estimated costs of the choice (and predicted accuracy, where a sweep exists); returns the prediction."""
    model_cost = cache.cost_model(name, method)
    ratios = choice.estimate_ratios()
    prediction = _prediction(name, method, criterion, ratios)
    base_est, est = model_cost.estimate({}), model_cost.estimate(ratios)
    st.markdown("#### Estimate")
    _estimates(base_est, est, prediction, cache.spec(name).has_data, method)
    if lut is not None:
        _latency_estimate(name, lut, model_cost, ratios)
    st.plotly_chart(estimate_bars(base_est, est), width="stretch", key=state.ESTIMATE_CHART)
    st.caption("Estimates come from layer shapes and channel coupling (exact for conv, linear and norm layers); "
               "nothing is pruned until you apply. Latency and accuracy are only shown once measured.")
    if registry.get(method).mask:
        st.info("Masks zero weights but keep every tensor dense: file size, dense FLOPs and latency stay the "
                "same. Sparse-effective FLOPs show what sparse kernels could skip at best.")
    return prediction


def _config(name: str, method: str, criterion: str, choice: methods.Choice, training: Training,
            repair: tuple[str, int], quantize: str) -> PruneConfig:
    """The run's PruneConfig (quantize: 'int8' or 'none', after its last stage); raises PruneLabError (with the
    reason) for a combination that cannot work."""
    return PruneConfig(model=name, method=method, ratios={k: v for k, v in choice.ratios.items() if v > 0},
                       criterion=criterion, model_fingerprint=cache.spec(name).fingerprint, seed=training.seed,
                       finetune=FinetuneConfig(**training.finetune), schedule=Schedule(**training.schedule),
                       pattern=choice.pattern, remove_blocks=choice.remove_blocks, repair=repair[0],
                       calibration_samples=repair[1], quantize=quantize)


def _apply(name: str, config: PruneConfig | None, prediction: dict | None, lut, stages: int = 0) -> None:
    """The Apply button (disabled while a run is going or nothing valid is set) and the run's outcome. stages: how
    many the listed recipe has (0: none, the settings above run); a recipe's progress says 'stage 1/2 (neuron)'."""
    own = state.own_run(name)  # this session's run job; other sessions' runs do not block it
    busy = own is not None and jobs.running("run", name, own)
    label = f"Apply the recipe ({stages} stage{'s' * (stages > 1)}) and measure" if stages else "Apply and measure"
    if st.button(label, type="primary", key=state.APPLY, disabled=config is None or busy):
        if config is not None and not busy:
            _launch(name, config, prediction, lut)
    # this session's run job; None after a refresh: the model's latest run job
    run_id, error = jobs.panel("run", name, state.own_run(name))
    if error:
        st.error(f"The run failed: {md(error)}")
    elif run_id:
        state.announce_run(run_id)  # select a new run once, then let the user choose
        st.success(f"Run {run_id} measured and saved — open the Results and Export pages.")


def render(name: str) -> None:
    strategy_helper.helper(name)
    method, criterion = _method_and_criterion(cache.spec(name).has_data)
    units = cache.cost_model(name, method).units
    lut = None
    technique = registry.get(method)
    if technique.hardware_aware:
        hardware_ui.apply_solution(name)  # before any widget it sets is drawn
        lut = hardware_ui.panel(name)
    hf = hf_mode.toggle(name, method)  # on: only cuts the model's Hugging Face config can describe
    if technique.solved and units:
        locks.restore(name, method)  # before the solver's "Locked" multiselect is drawn
        solver_panel(name, method, criterion, lut, hf)
    choice = hf_mode.controls(name, method, units) if hf and units else methods.controls(name, method, criterion,
                                                                                        units, lut)
    prediction = _estimate_section(name, method, criterion, choice, lut) if choice is not None else None

    st.markdown("#### Apply, fine-tune, measure")
    repair = repair_ui.control(technique, cache.spec(name).has_data)
    training = options(cache.spec(name), cache.finetune_recipe(name), cache.display_name(name))
    quantize = quantize_ui.control()  # after the last stage: of these settings, or of the listed recipe
    config = None
    if choice is not None:
        try:
            config = _config(name, method, criterion, choice, training, repair, quantize)
        except PruneLabError as e:
            st.error(md(e))
    hf_mode.check(name, config)
    listed, recipe = stages.panel(name, config, quantize)
    if listed:  # the recipe runs instead: the prediction and width table are of the settings above alone
        config, prediction, lut = recipe, None, None
    _apply(name, config, prediction, lut, len(state.recipe_stages(name)) if listed else 0)

"""The dashboard's session state: every session key is named here once, and only this module writes them.

Pages are separate scripts (`st.navigation`), so what they share lives in the session: the model the pages
show and the run Results and Export show. Both are mirrored in the URL (`?model=...&run=...`) so a reload, a
new tab or a shared link opens the same model and run.

Other modules read and write session state only through the functions and typed accessors below (tests
check it on the source): widgets take their `key=` from the constants and key functions here; callbacks and
pages change values through the writers. Streamlit lets code set a widget's value only before that widget
is drawn in a run (in a callback, or earlier in the script): every writer that sets a widget's value says
so in its docstring.

Ratio sliders have one writer, `TuneState.set_sliders`: plain sliders take the value capped at MAX_RATIO and
rounded to RATIO_DIGITS decimals (a solver's, a config's or a global threshold's ratio is kept, not moved to the
slider's 0.01 grid: applying what was imported or solved must cut what the config or the solve says);
hardware-aware sliders the fast width at or below what the capped value keeps. The "All layers" slider, which
only shows a value the user moves, holds its value in slider steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.graph import Unit, kept_channels, ratio_for
from core.hardware import LatencyTable

MAX_RATIO = 0.95  # ratio sliders' maximum: the config accepts anything below 1; 0.95 keeps at least 5% of a layer
STEP = 0.01  # ratio sliders' step (what a hand move sets)
RATIO_DIGITS = 6  # decimals a written ratio keeps: core.graph.ratio_for's, finer than one channel of any unit

# --- sidebar: the model choice and the user's own models -------------------------------------------------------
MODEL_CHOICE = "model"  # the sidebar's model selectbox
MODEL_SHOWN = "model-shown"  # the model the pages show (the last choice that was not "your own model")
MODEL_PENDING = "model-pending"  # a choice to select before the selectbox is drawn
OWN_MODELS = "own-models"  # handles of the user models loaded in this session, in order
USER_MODELS = "user-models"  # handle -> load arguments (dashboard.cache.UserModel) of own models
OWN_REF, OWN_WEIGHTS, OWN_DATA, OWN_TRUST = "own-ref", "own-weights", "own-data", "own-trust"  # the own-model form
OWN_TEXT_COLUMN, OWN_LABEL_COLUMN = "own-text-column", "own-label-column"  # its data's column choices
OWN_LOAD, OWN_CANCEL = "own-load", "own-cancel"  # its buttons
LOAD_JOB = "own-load-job"  # the dashboard.load_job.LoadJob being followed, or None

# --- runs: the selected one, the one this session just made ----------------------------------------------------
SELECTED_RUN = "selected_run"  # the run id Results and Export show first
ANNOUNCED = "announced"  # the run this session last made (selected once, then the user chooses)
MODEL_PARAM, RUN_PARAM = "model", "run"  # query parameters mirroring MODEL_SHOWN and SELECTED_RUN

# --- Tune: method, controls, solver, hardware, strategy, training ----------------------------------------------
METHOD, CRITERION, SCOPE, FILL_GLOBAL = "method", "criterion", "scope", "fill-global"
NM_N, NM_M, BLOCK_ROWS, BLOCK_COLS, DROP_LOWEST = "nm-n", "nm-m", "block-rows", "block-cols", "drop-lowest"
HW_AWARE, HW_BATCH, BUILD_LUT, HW_APPLIED = "hw-aware", "hw-batch", "build-lut", "hw-applied"
SOLVER_TARGET, SOLVER_VALUE, SOLVER_STRATEGY = "solver-target", "solver-value", "solver-strategy"
SOLVER_MIN, SOLVER_MAX, SOLVER_LOCKED = "solver-min", "solver-max", "solver-locked"
SOLVER_HW, SOLVE = "solver-hw", "solve"
STRATEGY_BOTTLENECK, STRATEGY_LOSS, STRATEGY_HARDWARE = "strategy-bottleneck", "strategy-loss", "strategy-hardware"
STRATEGY_APPLY = "strategy-apply"
FOCUS = "focus"  # the unit a chart click put first among the sliders
UNIT_SEARCH = "unit-search"  # the big-model slider search (all models and methods; a heatmap click fills it)
ESTIMATE_CHART, APPLY = "estimate-chart", "apply"
HF_CHECK = "hf-check"  # "Check HF export": whether the current config exports as a Hugging Face folder
REPAIR, REPAIR_CALIB = "repair", "repair-calib"  # post-training repair and its calibration examples
QUANTIZE = "quantize"  # "Quantise to int8 after the last stage" (components.quantize)
EPOCHS, LR, SEED = "epochs", "lr", "seed"
RECIPE_OWN, OPTIMIZER, BATCHNORM = "recipe-own", "optimizer", "batchnorm"  # the fine-tune recipe set by the user
BATCH_SIZE = "batch-size"
SCHEDULE, SCHEDULE_STEPS = "schedule", "schedule-steps"
SCHEDULE_CURVE, SCHEDULE_EVERY = "schedule-curve", "schedule-every"
SCHEDULE_LAST = "schedule-last"  # iterative: share of the budget after the last cut (None: equal)
DISTILL, DISTILL_TEMPERATURE, DISTILL_ALPHA, REWIND = "distill", "distill-temperature", "distill-alpha", "rewind"
STAGE_ADD, STAGE_PICK, STAGE_UP, STAGE_DOWN = "stage-add", "stage-pick", "stage-up", "stage-down"  # the recipe
STAGE_REMOVE, STAGE_CLEAR = "stage-remove", "stage-clear"  # (components.stages): its buttons and stage picker

# --- Sensitivity and Model pages -------------------------------------------------------------------------------
SENS_GRANULARITY, SENS_CRITERION, SENS_GRID = "sens-granularity", "sens-criterion", "sens-grid"
SENS_EVAL, SENS_CALIB, SENS_SEED, SENS_METRIC = "sens-eval", "sens-calib", "sens-seed", "sens-metric"
SENS_DETAIL, SENS_HEATMAP, RUN_SWEEP, UNIT_COSTS = "sens-detail", "sens-heatmap", "run-sweep", "unit-costs"
HEAT_ROWS, HEAT_CRITERION, HEAT_SORT, HEAT_DETAIL = "heat-rows", "heat-criterion", "heat-sort", "heat-detail"
HEATMAP, HEAD_CRITERION, HEAD_HEATMAP = "heatmap", "head-criterion", "head-heatmap"

# --- Results, Export, Experiments ------------------------------------------------------------------------------
RESULTS_RUN, LOAD_ALIGNED, NETRON_ON = "results-run", "load-aligned", "netron-on"
WIDTH_CHART, TRAJECTORY_CHART, COMPARE_CHART, ACCURACY_CHART = ("width-chart", "trajectory-chart", "compare-chart",
                                                                "accuracy-chart")
EXPORT_RUN, RUN_DEPLOY, DL_INT8, DL_CONFIG, DL_ONNX, DL_METRICS = ("export-run", "run-deploy", "dl-int8", "dl-config",
                                                                  "dl-onnx", "dl-metrics")
DL_PT2, DL_WEIGHTS = "dl-pt2", "dl-weights"  # the pruned module as a torch.export program and its weights
DL_HF = "dl-hf"  # the run as a zipped Hugging Face folder
EXP_METHOD, EXP_STATUS, EXP_SEARCH, EXP_A, EXP_B = "exp-method", "exp-status", "exp-search", "exp-a", "exp-b"
EXP_CHANGED_ONLY, EXP_PARETO_X, EXP_PARETO = "exp-changed-only", "exp-pareto-x", "exp-pareto"
EXP_DOWNLOADS, EXP_SELECTED, EXP_LOAD, EXP_DELETE = "exp-downloads", "exp-selected", "exp-load", "exp-delete"
EXP_IMPORT, EXP_IMPORT_OWN = "exp-import", "exp-import-own"  # the config uploader; "open the own-model form"
IMPORT_OFFER = "exp-import-offer"  # the model file a refused config names, offered to the own-model form

# --- Search -------------------------------------------------------------------------------------------------------
SEARCH_TARGETS, SEARCH_STRATEGIES, SEARCH_SEEDS = "search-targets", "search-strategies", "search-seeds"
SEARCH_EPOCHS, SEARCH_HW, SEARCH_EXECUTOR, SEARCH_ADDRESS = ("search-epochs", "search-hw", "search-executor",
                                                             "search-address")
SEARCH_START, SEARCH_PICK = "search-start", "search-pick"  # Start; the search shown when none runs
SEARCH_TRIALS, SEARCH_CHART = "search-trials", "search-chart"  # the trials table and the Pareto chart

# --- messages a callback leaves for a page, per model (see say) -------------------------------------------------
SOLVER_MESSAGE = "solver-message"  # the last solve's verdict
GLOBAL_MESSAGE = "global-message"  # the global-threshold fill's outcome
STRATEGY_MESSAGE = "strategy-message"  # what "Apply to Tune" set
LOAD_MESSAGE = "exp-load-message"  # outcome of "Load into Tune"
IMPORT_MESSAGE = "exp-import-message"  # outcome of the last uploaded config
DELETE_MESSAGE = "exp-delete-message"  # outcome of the last delete
STAGE_MESSAGE = "stage-message"  # a stage the recipe could not take, and why
SEARCH_MESSAGE = "search-message"  # why Start did not start a search

# Widget keys whose values outlive their page. Streamlit forgets a widget's value on a run that does not draw
# it (every run of another page), but these settings are read from elsewhere (Tune's predicted accuracy reads
# the Sensitivity page's sweep settings) or expected back when the user returns (Tune's method, training,
# solver; the Model page's heatmap choices). Only value widgets: a button's or an uploader's key may not be
# written. Ratio sliders and their search keep theirs with persist_state="session" where they are drawn.
KEPT = frozenset({
    SENS_GRANULARITY, SENS_CRITERION, SENS_GRID, SENS_EVAL, SENS_CALIB, SENS_SEED, SENS_METRIC,
    METHOD, CRITERION, SCOPE, HW_AWARE, HW_BATCH, BLOCK_ROWS, BLOCK_COLS, REPAIR, REPAIR_CALIB, QUANTIZE,
    EPOCHS, LR, SEED, DISTILL, DISTILL_ALPHA, DISTILL_TEMPERATURE, REWIND, RECIPE_OWN, OPTIMIZER, BATCHNORM, BATCH_SIZE,
    SCHEDULE, SCHEDULE_CURVE, SCHEDULE_STEPS, SCHEDULE_EVERY, SCHEDULE_LAST,
    SOLVER_TARGET, SOLVER_VALUE, SOLVER_STRATEGY, SOLVER_MIN, SOLVER_MAX, SOLVER_HW,
    STRATEGY_BOTTLENECK, STRATEGY_LOSS, STRATEGY_HARDWARE,
    HEAT_ROWS, HEAT_CRITERION, HEAT_SORT, HEAD_CRITERION,
    SEARCH_TARGETS, SEARCH_STRATEGIES, SEARCH_SEEDS, SEARCH_EPOCHS, SEARCH_HW, SEARCH_EXECUTOR, SEARCH_ADDRESS,
})
# per-model keys: N:M layers, dropped blocks, the HF-compatible toggle
KEPT_PREFIXES = ("nm-layers|", "drop|", "strategy-family|", "hf-compatible|")


# --- keys that carry a model, method, unit or item -----------------------------------------------------------------

def slider_key(model: str, method: str, unit: str, hw: bool = False) -> str:
    """A unit's ratio slider (hw: its hardware-aware twin, which offers only fast widths)."""
    return f"ratio{'-hw' if hw else ''}|{model}|{method}|{unit}"


def all_key(model: str, method: str, hw: bool = False) -> str:
    """The slider that moves every unit's slider at once."""
    return f"ratio-all{'-hw' if hw else ''}|{model}|{method}"


def locks_key(model: str, method: str) -> str:
    """The Tune page's own "Locked units" multiselect (big models)."""
    return f"locked|{model}|{method}"


def bulk_keys(model: str, method: str) -> tuple[str, str, str, str, str]:
    """Bulk set's selection, value, message, "Select shown" and Apply."""
    return tuple(f"bulk{part}|{model}|{method}" for part in ("", "-value", "-message", "-filtered", "-apply"))


def group_key(model: str, method: str, group: str, opened: bool) -> str:
    """A slider group's expander (a new key when the search opens it, so Streamlit redraws it open)."""
    return f"group|{model}|{method}|{group}|{'open' * opened}"


def hf_compatible_key(model: str) -> str:
    """The Tune page's "HF-compatible" toggle of a Hugging Face model (per model: it is off for a new one)."""
    return f"hf-compatible|{model}"


def nm_layers_key(model: str) -> str:
    return f"nm-layers|{model}"


def drop_key(model: str, block: str) -> str:
    """The layer method's checkbox removing `block`."""
    return f"drop|{model}|{block}"


def drop_n_key(model: str) -> str:
    return f"drop-n|{model}"


def strategy_family_key(model: str) -> str:
    return f"strategy-family|{model}"


def file_keys(field: str) -> tuple[str, str]:
    """An own-model file field's typed path and upload."""
    return f"{field}-path", f"{field}-upload"


def cancel_key(task: str) -> str:
    """A background job's Cancel button."""
    return f"cancel-{task}"


def download_key(file: str) -> str:
    return f"exp-dl-{file}"


def delete_confirm_key(exp_id: str) -> str:
    return f"exp-delete-confirm|{exp_id}"


def _run_key(model: str) -> str:
    return f"run-key|{model}"


def _picked_key(source: str) -> str:
    return f"picked|{source}"


def _stages_key(model: str) -> str:
    return f"stages|{model}"


def _message_key(key: str, model: str) -> str:
    return f"{key}|{model}"


# --- generic readers and the writers that keep a widget's value valid ---------------------------------------------

def get(key: str, default: Any = None) -> Any:
    """The value under key (default if there is none)."""
    return st.session_state.get(key, default)


def keep_choice(key: str, options: list) -> Any:
    """Before the widget under key is drawn: a value it no longer offers becomes its first option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.session_state[key]


def forget_choice(key: str, options: list) -> None:
    """Before the widget under key is drawn: a value it no longer offers is dropped (it takes its default)."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def forget(key: str) -> None:
    """Drop a value (before its widget is drawn: the widget then takes its default)."""
    st.session_state.pop(key, None)


def load_settings(values: Mapping[str, Any]) -> None:
    """Set widget values (keys from this module; before the widgets are drawn: in a callback). Ratio sliders go
    through TuneState.set_sliders instead."""
    st.session_state.update(values)


def keep_settings() -> None:
    """Carry the KEPT widget values into this run (call before any widget is drawn): a value written through
    session state is kept until its widget takes it, whichever page runs meanwhile."""
    for key in [k for k in st.session_state if k in KEPT or k.startswith(KEPT_PREFIXES)]:
        st.session_state[key] = st.session_state[key]


# --- messages a callback leaves for the page, per model -----------------------------------------------------------

def say(key: str, model: str, kind: str, text: str) -> None:
    """Leave a message (kind: success, info, warning or error) about model `model` under message key `key`."""
    st.session_state[_message_key(key, model)] = (kind, text)


def unsay(key: str, model: str) -> None:
    st.session_state.pop(_message_key(key, model), None)


def message(key: str, model: str) -> tuple[str | None, str | None]:
    """The (kind, text) left under key about model `model`, or (None, None)."""
    return st.session_state.get(_message_key(key, model), (None, None))


# --- the model choice, own models, the load job ---------------------------------------------------------------------

def user_models() -> dict:
    """The user's own models this session loaded, by handle: a session loads another's model only by loading it
    itself (nothing about them is kept per server process)."""
    return st.session_state.setdefault(USER_MODELS, {})


def initial_model(default: str) -> str:
    """The model a new session starts on: the URL's `?model=`, else `default`. The sidebar offers it only
    if it is a model it lists (a user model's handle from another session is not)."""
    return st.query_params.get(MODEL_PARAM) or default


def shown_model() -> str:
    """The model the pages draw (set by app.py each run before the page runs)."""
    return st.session_state[MODEL_SHOWN]


def last_shown(fallback: str) -> str:
    """The model the pages showed last (fallback in a new session)."""
    return st.session_state.get(MODEL_SHOWN) or fallback


def show_model(name: str) -> None:
    st.session_state[MODEL_SHOWN] = name


def loaded_models() -> list[str]:
    """Handles of the user models this session loaded, in order."""
    return st.session_state.get(OWN_MODELS, [])


def add_loaded_model(handle: str) -> None:
    """A user model just loaded: listed last, and selected on the next run (before the selectbox is drawn)."""
    st.session_state[OWN_MODELS] = [*(h for h in loaded_models() if h != handle), handle]
    st.session_state[MODEL_PENDING] = handle


def settle_model_choice(names: list[str], default: str) -> None:
    """Before the model selectbox is drawn: a pending choice is taken; a choice it does not offer becomes
    default (or its first name)."""
    if pending := st.session_state.pop(MODEL_PENDING, None):
        st.session_state[MODEL_CHOICE] = pending
    if st.session_state.get(MODEL_CHOICE) not in names:
        st.session_state[MODEL_CHOICE] = default if default in names else names[0]


def open_own_model_form(own: str, ref: str) -> None:
    """In a callback: the sidebar switches to the own-model choice `own` with ref typed in (nothing loads)."""
    st.session_state[MODEL_PENDING] = own
    st.session_state[OWN_REF] = ref
    st.session_state.pop(IMPORT_OFFER, None)


def offered_model_file() -> str | None:
    """The model file a refused config named, offered to the own-model form."""
    return st.session_state.get(IMPORT_OFFER)


def offer_model_file(ref: str | None) -> None:
    """Offer ref to the own-model form (None: withdraw the offer)."""
    if ref is None:
        st.session_state.pop(IMPORT_OFFER, None)
    else:
        st.session_state[IMPORT_OFFER] = ref


def load_job() -> Any:
    """The own-model check-load this session follows (a dashboard.load_job.LoadJob), or None."""
    return st.session_state.get(LOAD_JOB)


def set_load_job(job: Any) -> None:
    st.session_state[LOAD_JOB] = job


def take_load_job() -> Any:
    """The followed load (or None), no longer followed."""
    return st.session_state.pop(LOAD_JOB, None)


# --- runs -----------------------------------------------------------------------------------------------------------

def selected_run() -> str | None:
    """The run id the session last selected or made, if any."""
    return st.session_state.get(SELECTED_RUN)


def select_run(run_id: str) -> None:
    st.session_state[SELECTED_RUN] = run_id


def restore_run() -> None:
    """A new session (a reload, a link) takes its selected run from the URL's `?run=`."""
    if SELECTED_RUN not in st.session_state and (run_id := st.query_params.get(RUN_PARAM)):
        select_run(run_id)


def announce_run(run_id: str) -> None:
    """A run this session made finished: selected once (then the user's choice stands)."""
    if st.session_state.get(ANNOUNCED) != run_id:
        st.session_state[ANNOUNCED] = run_id
        select_run(run_id)


def follow_newest_search(model: str, names: list[str]) -> None:
    """Before the search picker is drawn: a search newer than any this session showed of `model` (one that just
    ended) is picked, once; a pick the picker no longer offers falls back to the newest."""
    seen = f"search-newest|{model}"
    if names and st.session_state.get(seen) != names[0]:
        st.session_state[seen] = st.session_state[SEARCH_PICK] = names[0]
    forget_choice(SEARCH_PICK, names)


def follow_announced(key: str, ids: list[str]) -> None:
    """Before the run selectbox under key is drawn: it shows the run this session just made, once."""
    announced, seen = st.session_state.get(ANNOUNCED), f"{key}:announced"
    if announced in ids and st.session_state.get(seen) != announced:
        st.session_state[key] = st.session_state[seen] = announced


def own_run(model: str) -> str | None:
    """The key of this session's run job for model (None: it started none)."""
    return st.session_state.get(_run_key(model))


def set_own_run(model: str, key: str) -> None:
    st.session_state[_run_key(model)] = key


def sync_url() -> None:
    """Write the shown model and the selected run into the URL (only what changed: each write is a message
    to the browser)."""
    wanted = {MODEL_PARAM: st.session_state.get(MODEL_SHOWN), RUN_PARAM: selected_run()}
    for param, value in wanted.items():
        if value is None:
            st.query_params.pop(param, None)
        elif st.query_params.get(param) != value:
            st.query_params[param] = value


# --- chart picks: a heatmap click sends a unit or group to Tune -----------------------------------------------------

def focus() -> str | None:
    """The unit a chart click put first among the Tune sliders."""
    return st.session_state.get(FOCUS)


def set_focus(unit: str) -> None:
    st.session_state[FOCUS] = unit


def unit_search() -> str:
    return st.session_state.get(UNIT_SEARCH, "")


def pick_group(source: str, group: str | None) -> None:
    """A click in chart `source` on `group` (None: no selection) fills the Tune search once per click, so the
    user can edit the search afterwards. The Tune search is drawn on another page: no widget-order constraint."""
    if group is None:
        st.session_state.pop(_picked_key(source), None)
    elif st.session_state.get(_picked_key(source)) != group:
        st.session_state[_picked_key(source)] = group
        st.session_state[UNIT_SEARCH] = group


# --- Tune: settings that are not per model ---------------------------------------------------------------------------

def hw_aware() -> bool:
    """Whether the Tune sliders offer only fast widths."""
    return bool(st.session_state.get(HW_AWARE, False))


def set_hw_aware(on: bool) -> None:
    """Before the hardware-aware toggle is drawn (a callback, or the page before its panel)."""
    st.session_state[HW_AWARE] = on


def hf_compatible(model: str) -> bool:
    """Whether the Tune page offers only the cuts a Hugging Face config can describe, for model `model`."""
    return bool(st.session_state.get(hf_compatible_key(model), False))


def choose_method(method: str, criterion: str | None = None) -> None:
    """In a callback: Tune shows `method` (and `criterion`, if given)."""
    st.session_state[METHOD] = method
    if criterion is not None:
        st.session_state[CRITERION] = criterion


def seed() -> int:
    return int(st.session_state.get(SEED, 0))


def no_finetuning() -> None:
    """Before the epochs field is drawn: fine-tuning off (a model without training data; the field is shared
    by all models, so a value set for one with data would show, disabled)."""
    st.session_state[EPOCHS] = 0


def set_schedule(kind: str) -> int:
    """In a callback: the schedule radio to kind, with at least one fine-tuning epoch; returns the epochs."""
    st.session_state[SCHEDULE] = kind
    if int(st.session_state.get(EPOCHS, 1)) < 1:
        st.session_state[EPOCHS] = 1
    return int(st.session_state.get(EPOCHS, 1))


def set_nm(n: int, m: int) -> None:
    """In a callback: the N:M pattern fields."""
    st.session_state[NM_N], st.session_state[NM_M] = n, m


def hw_solution_applied(job_id: str) -> bool:
    """Whether the hardware-aware solve job_id was already put into the sliders."""
    return st.session_state.get(HW_APPLIED) == job_id


def mark_hw_solution_applied(job_id: str) -> None:
    st.session_state[HW_APPLIED] = job_id


@dataclass(frozen=True)
class SolverSettings:
    """The budget solver panel's values (components.solver draws them)."""

    target: str
    value: float
    strategy: str
    low: float
    high: float
    locked: tuple[str, ...]
    hardware_aware: bool


def solver_settings() -> SolverSettings:
    s = st.session_state
    # the strategy is not drawn in HF-compatible mode (uniform only): it may not have a value yet
    return SolverSettings(s[SOLVER_TARGET], float(s[SOLVER_VALUE]), s.get(SOLVER_STRATEGY, "uniform"),
                          float(s[SOLVER_MIN]), float(s[SOLVER_MAX]), tuple(s.get(SOLVER_LOCKED, [])),
                          bool(s.get(SOLVER_HW, False)))


# --- Tune: one model and method -------------------------------------------------------------------------------------

def slider_value(value: float) -> float:
    """What a plain ratio slider holds for `value`: within [0, MAX_RATIO], to RATIO_DIGITS decimals."""
    return round(min(max(value, 0.0), MAX_RATIO), RATIO_DIGITS)


def _in_steps(value: float) -> float:
    """value within [0, MAX_RATIO], in slider steps (the "All layers" slider)."""
    return round(round(min(max(value, 0.0), MAX_RATIO) / STEP) * STEP, 2)


def snapped_value(unit: Unit, value: float, table: LatencyTable) -> float:
    """What a hardware-aware slider holds for `value`: the ratio of the fastest width at or below what the capped
    value keeps (above MAX_RATIO only when no fast width keeps more)."""
    return ratio_for(unit, table.snap(unit.name, kept_channels(unit, min(max(value, 0.0), MAX_RATIO))))


@dataclass(frozen=True)
class TuneState:
    """The Tune page's state of one model and method: ratio sliders, locks, bulk set, the layer method's blocks."""

    name: str
    method: str

    def slider_key(self, unit: str, hw: bool = False) -> str:
        return slider_key(self.name, self.method, unit, hw)

    def all_key(self, hw: bool = False) -> str:
        return all_key(self.name, self.method, hw)

    def slider(self, unit: str, hw: bool = False) -> float:
        """A unit's slider value (0 before it has one)."""
        return st.session_state.get(self.slider_key(unit, hw), 0.0)

    def sliders(self, units: Iterable[str], hw: bool = False) -> dict[str, float]:
        return {u: self.slider(u, hw) for u in units}

    def slider_keys(self, units: Iterable[str], hw: bool = False) -> dict[str, str]:
        """Every unit's slider key, each given a value (0) if it has none yet: set here, not as the widget's
        value=, because callbacks write it too. Before the sliders are drawn."""
        keys = {u: self.slider_key(u, hw) for u in units}
        for key in keys.values():
            st.session_state.setdefault(key, 0.0)
        st.session_state.setdefault(self.all_key(hw), 0.0)
        return keys

    def set_sliders(self, ratios: Mapping[str, float], units: Mapping[str, Unit] | None = None,
                    table: LatencyTable | None = None) -> dict[str, float]:
        """THE writer of ratio sliders (in a callback, or before the sliders are drawn): plain sliders take each
        ratio capped at MAX_RATIO, to RATIO_DIGITS decimals; with a width-latency table (units then needed), the
        hardware-aware sliders take the snapped fast width. Returns what the sliders now hold."""
        written = {u: slider_value(r) if table is None else snapped_value(units[u], r, table)
                   for u, r in ratios.items()}
        for unit, value in written.items():
            st.session_state[self.slider_key(unit, table is not None)] = value
        return written

    def set_all(self, value: float, hw: bool = False) -> float:
        """The "All layers" slider to value, in its steps (in a callback, or before it is drawn); returns what it
        holds."""
        st.session_state[self.all_key(hw)] = held = _in_steps(value)
        return held

    def show_mean(self, units: list[str], hw: bool = False) -> float:
        """The "All layers" slider to the mean of the unit sliders (after a solver filled them: it reflects what
        was set). Before it is drawn."""
        values = self.sliders(units, hw).values()
        return self.set_all(sum(values) / max(len(values), 1), hw)

    def all_value(self, hw: bool = False) -> float:
        return st.session_state.get(self.all_key(hw), 0.0)

    # locks: the solver's "Locked" multiselect (solver methods) and the page's own list (big models)

    def locked(self, names: Iterable[str], shared: bool) -> set[str]:
        """The locked units among names: the solver's locks (shared: a solver method, while they exist), else
        the page's own list for this model and method."""
        s = st.session_state
        chosen = s[SOLVER_LOCKED] if shared and SOLVER_LOCKED in s else s.get(locks_key(self.name, self.method), [])
        return set(chosen) & set(names)

    def restore_locks(self) -> None:
        """Before the solver's "Locked" is drawn: if Streamlit dropped its value (it was not drawn for a while),
        it takes the page's own list."""
        mirror = locks_key(self.name, self.method)
        if SOLVER_LOCKED not in st.session_state and mirror in st.session_state:
            st.session_state[SOLVER_LOCKED] = list(st.session_state[mirror])

    def mirror_locks(self, names: list[str]) -> None:
        """Before the page's own "Locked units" is drawn (solver methods): it shows the solver's locks."""
        if SOLVER_LOCKED in st.session_state:
            st.session_state[locks_key(self.name, self.method)] = [n for n in st.session_state[SOLVER_LOCKED]
                                                                  if n in names]

    def share_locks(self) -> None:
        """on_change of the page's own "Locked units" (solver methods): the solver's locks follow it."""
        st.session_state[SOLVER_LOCKED] = list(st.session_state[locks_key(self.name, self.method)])

    def own_locks(self) -> set[str]:
        return set(st.session_state.get(locks_key(self.name, self.method), []))

    # bulk set (big models)

    def bulk_selection(self) -> list[str]:
        return st.session_state.get(bulk_keys(self.name, self.method)[0], [])

    def select_for_bulk(self, names: list[str]) -> None:
        """In a callback: the bulk selection."""
        st.session_state[bulk_keys(self.name, self.method)[0]] = names

    def bulk_value(self) -> float:
        """The bulk value (given 0 if it has none: call before its slider is drawn)."""
        return st.session_state.setdefault(bulk_keys(self.name, self.method)[1], 0.0)

    def bulk_message(self) -> str | None:
        return st.session_state.get(bulk_keys(self.name, self.method)[2])

    def say_bulk(self, text: str) -> None:
        st.session_state[bulk_keys(self.name, self.method)[2]] = text

    # the layer method's blocks

    def drop_count(self) -> int:
        return int(st.session_state.get(drop_n_key(self.name), 1))

    def dropped(self, blocks: Iterable[str]) -> list[str]:
        """The blocks whose checkbox is ticked."""
        return [b for b in blocks if st.session_state.get(drop_key(self.name, b))]

    def tick_blocks(self, blocks: Iterable[str], ticked: set[str]) -> None:
        """In a callback: exactly the `ticked` blocks' checkboxes ticked."""
        for block in blocks:
            st.session_state[drop_key(self.name, block)] = block in ticked


# --- Tune: the recipe being built, per model -------------------------------------------------------------------------

def recipe_stages(model: str) -> list:
    """The stages (core.config.PruneConfig, each without `then`) of the recipe built for model, in order."""
    return list(st.session_state.get(_stages_key(model), []))


def set_recipe_stages(model: str, stages: Iterable) -> None:
    """The recipe's stages for model (an empty list: no recipe; Tune then runs its own settings)."""
    st.session_state[_stages_key(model)] = list(stages)


def pick_stage(number: int) -> None:
    """In a callback: the recipe's stage picker to stage `number` (1-based)."""
    st.session_state[STAGE_PICK] = number


# --- Sensitivity: the sweep settings other pages read ----------------------------------------------------------------

SWEEP_FIELDS = {  # SweepSpec field -> the Sensitivity page's control that sets it
    "granularity": SENS_GRANULARITY, "criterion": SENS_CRITERION, "grid": SENS_GRID, "eval_samples": SENS_EVAL,
    "calibration_samples": SENS_CALIB, "seed": SENS_SEED}


def sweep_settings() -> dict[str, Any]:
    """The Sensitivity page's widget values that exist (granularity, criterion, grid, eval, calib, seed)."""
    s = st.session_state
    return {field: s[key] for field, key in SWEEP_FIELDS.items() if key in s}


def restore_sweep_settings(fields: dict[str, Any]) -> None:
    """A new session's sweep settings from `fields` (SweepSpec fields: those of the sweep last started for the
    model), so a refresh shows that sweep's progress and then its heatmap, not the defaults' "Not measured yet".
    Called only while the session has set none (sweep_settings() is empty): what the user chose stays theirs."""
    s = st.session_state
    for field, key in SWEEP_FIELDS.items():
        if field in fields:
            s[key] = list(fields[field]) if field == "grid" else fields[field]


def default_sweep_settings(fields: dict[str, Any]) -> None:
    """Before the sweep controls are drawn: the value of each one not set yet (a widget given both a default and
    a session value would warn)."""
    for field, value in fields.items():
        st.session_state.setdefault(SWEEP_FIELDS[field], value)

"""Solving a budget: a SolveRequest (strategy, target, bounds, method, criterion, sweep table, ...) to per-unit
ratios, the same way whichever front end asks. `prunelab allocate` builds the request from its options, the Tune
page's solver from its widgets (and may pass what it has cached: the cost model, importance scores, the baseline's
measurements, the width table); the arithmetic is core.allocate's, and the baseline latency a latency target is
measured against is one figure: baseline_latency_ms, the cached onnxruntime measurement of the baseline's ONNX
file as the baseline's metrics record it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from core import methods
from core.allocate import MAX_RATIO, Allocation, Bounds, Target, allocate
from core.config import FinetuneConfig, PruneConfig
from core.data import id_bound
from core.errors import PruneLabError
from core.estimate import CostModel, build_cost_model
from core.experiment import Baseline
from core.export import export_onnx
from core.export_hf import layer_stack_units
from core.hardware import LatencyTable, choose_by_measurement, load_or_build
from core.latency import measure_cached
from core.metric_keys import LATENCY_DECIMALS, latency_key
from core.prune import calibration
from core.recipes import choose as choose_recipe
from core.spec import ModelSpec
from core.workflows.defaults import CALIBRATION_SAMPLES, CRITERION, METHOD, SEED
from core.workflows.predict import predict_accuracy

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)
LATENCY_TARGETS = ("latency_ms", "speedup")  # targets measured against the baseline's latency


@dataclass(frozen=True, eq=False)
class SolveRequest:
    """What the solver is asked: a target under per-unit bounds, by a strategy, for one method and criterion.

    table: the sensitivity sweep (the sensitivity strategy needs it; it also gives the predicted accuracy drop);
    calibration_samples / seed: the data the global strategy's importance scores are computed on; latency_batch:
    the batch size a latency target and a hardware-aware solve refer to; hardware_aware: keep widths the runtime is
    fast at and choose the alignment by timing whole candidate models (core.hardware)."""

    target: Target
    strategy: str = "sensitivity"
    method: str = METHOD
    criterion: str = CRITERION
    min_ratio: float = 0.0
    max_ratio: float = MAX_RATIO
    locked: dict[str, float] = field(default_factory=dict)  # units held at a ratio
    table: pd.DataFrame | None = None
    calibration_samples: int = CALIBRATION_SAMPLES
    seed: int = SEED
    latency_batch: int = 1
    hardware_aware: bool = False
    hf_compatible: bool = False  # only configs a Hugging Face config can describe (core.export_hf)

    def bounds(self, units: list[str]) -> Bounds:
        return Bounds(low={u: self.min_ratio for u in units}, high={u: self.max_ratio for u in units},
                      locked=dict(self.locked))


def _hf_compatible(spec: ModelSpec, request: SolveRequest, units: list[str]) -> SolveRequest:
    """The request narrowed to what a Hugging Face config can describe: one ratio for all (the uniform strategy)
    over the layer stack's own units, every other unit (a classifier head's hidden layer) held at 0."""
    if request.strategy != "uniform":
        raise PruneLabError("HF-compatible solving keeps every layer alike: use the uniform strategy (a per-layer "
                            f"strategy such as {request.strategy} gives layers different widths)")
    inside = layer_stack_units(spec.model, dict.fromkeys(units, 0.0))
    held = {u: 0.0 for u in units if u not in inside}
    return replace(request, locked={**held, **request.locked})


@dataclass(frozen=True, eq=False)
class SolveOutcome:
    """The solver's answer: the allocation (ratios, estimate, predicted drop, met), the unpruned estimate it is
    compared with, the baseline latency it started from (ms; None when no latency was needed) and, hardware-aware,
    the width table used and one report row per alignment tried (core.hardware.choose_by_measurement)."""

    request: SolveRequest
    allocation: Allocation
    base_estimate: dict[str, int]
    baseline_ms: float | None = None
    hardware: LatencyTable | None = None
    candidates: list[dict] = field(default_factory=list)

    @property
    def prediction(self) -> dict | None:
        """The predicted accuracy drop of the chosen ratios (core.workflows.predict), None without a sweep."""
        return predict_accuracy(self.request.table, self.allocation.ratios)

    def config(self, spec: ModelSpec) -> PruneConfig:
        """The config of the chosen ratios (units at 0 left out)."""
        request = self.request
        return PruneConfig(model=spec.name, method=request.method, criterion=request.criterion,
                           ratios={u: r for u, r in self.allocation.ratios.items() if r > 0},
                           model_fingerprint=spec.fingerprint, seed=request.seed,
                           finetune=choose_recipe(spec).fill(FinetuneConfig()))  # replayed with the model's recipe


def swept_by(table: pd.DataFrame) -> tuple[str, str]:
    """(method, criterion) a sensitivity table was measured with: a solve on it prunes and ranks the same way."""
    return str(table["granularity"].iloc[0]), str(table["criterion"].iloc[0])


def baseline_onnx(spec: ModelSpec) -> bytes:
    """The unpruned model's ONNX file, exported as every run exports it."""
    return export_onnx(spec.model, spec.example_input)[0]


def baseline_latency_ms(spec: ModelSpec, batch: int, base: Baseline | None = None) -> float:
    """The baseline's onnxruntime median latency (ms, one thread) at `batch`, as its metrics record it: measured once
    per ONNX file, batch and machine, then read from the workspace cache (core.latency.measure_cached), rounded as
    core.experiment records it. base: the baseline's measurements if at hand (their figure is this one)."""
    if base is not None and base.metrics.get("latency_threads") == 1 and base.metrics.get(latency_key(batch)):
        return base.metrics[latency_key(batch)]
    onnx = base.onnx if base is not None and base.onnx else baseline_onnx(spec)
    lat = measure_cached(onnx, tuple(spec.example_input.shape[1:]), batch=batch, threads=1,
                         max_id=id_bound(spec.example_input))
    return round(lat.median_ms, LATENCY_DECIMALS)


def global_scores(spec: ModelSpec, request: SolveRequest) -> dict:
    """The unscaled importance scores the global strategy compares across units."""
    calib = calibration(spec, request.calibration_samples, request.seed)
    return methods.get(request.method).scores(spec.model, spec.example_input, request.criterion, calib,
                                              request.seed)


def _check_table(spec: ModelSpec, request: SolveRequest, units: list[str]) -> None:
    """A sweep table must be of this method and criterion and name only units the model has."""
    if request.table is None:
        return
    if swept_by(request.table) != (request.method, request.criterion):
        method, criterion = swept_by(request.table)
        raise PruneLabError(f"the sensitivity table is of {method} pruning by {criterion}, not {request.method} by "
                            f"{request.criterion}")
    stale = sorted(set(request.table["unit"]) - set(units))
    if stale:
        raise PruneLabError(f"the sensitivity table names units {spec.name} does not have: {', '.join(stale[:5])}")


def solve(spec: ModelSpec, request: SolveRequest, progress: StageProgress | None = None, *,
          cost_model: CostModel | None = None, scores: dict | None = None, base: Baseline | None = None,
          lut: LatencyTable | None = None) -> SolveOutcome:
    """Per-unit ratios for `request` (core.allocate.allocate). The keyword arguments are what a caller may have
    cached already — the method's cost model, the global strategy's scores, the baseline's measurements (its
    ONNX file and metrics), the width table at the request's latency batch — computed here when not given.
    Hardware-aware, candidate models are built and timed (tens of seconds); progress(stage, done, total) says so."""
    say = progress or (lambda stage, done, total: None)
    technique = methods.get(request.method)
    technique.check_criterion(request.criterion)
    if request.hardware_aware and not technique.hardware_aware:
        raise PruneLabError("hardware-aware solving needs channel pruning (masks do not change widths)")
    cm = cost_model or build_cost_model(spec.model, spec.example_input, request.method)
    units = [u.name for u in cm.units]
    _check_table(spec, request, units)
    if request.hf_compatible:
        request = _hf_compatible(spec, request, units)
    if request.strategy == "global" and scores is None:
        scores = global_scores(spec, request)
    if request.hardware_aware and lut is None:
        lut = load_or_build(spec, list(cm.units), request.latency_batch,
                            progress=lambda d, t: say("latency table", d, t))
    batch = lut.batch if request.hardware_aware else request.latency_batch
    needs_latency = request.target.kind in LATENCY_TARGETS or request.hardware_aware
    base_ms = baseline_latency_ms(spec, batch, base) if needs_latency else None

    def allocate_with(hardware: LatencyTable | None = None) -> Allocation:
        return allocate(request.strategy, cm, request.target, request.bounds(units), request.table, scores, base_ms,
                        hardware)

    if not request.hardware_aware:
        return SolveOutcome(request, allocate_with(), cm.estimate({}), base_ms)
    assert lut is not None  # set above for a hardware-aware request
    base_onnx = base.onnx if base is not None and base.onnx else baseline_onnx(spec)
    chosen, report = choose_by_measurement(spec, allocate_with, lut, base_onnx,
                                           lambda d, t: say("measuring aligned candidates", d, t))
    return SolveOutcome(request, chosen, cm.estimate({}), base_ms, lut, report)  # type: ignore[arg-type]

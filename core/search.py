"""Search: the grid of budget-solve -> apply trials (target x strategy x seed, a SearchSpec) on an executor, each
trial recorded in the experiment store with the search as its parent, then every finished trial timed again here
and the Pareto fronts of accuracy against FLOPs, size and latency written (core.search_report). The CLI's
`prunelab search` and a dashboard page both call run_search.

Where what happens, and why:
- the driver (this process) has the sensitivity sweep run once (cached; on the executor, split by unit; the
  sensitivity strategy needs it) and solves every trial's budget (milliseconds each, except hardware-aware
  solving, which builds and times candidate models on this machine);
- the executor runs each solvable trial as run_trial(job): a module-level function of plain data (the config
  JSON) and the model as the executor shares it (the object itself locally, the cluster's object store once on
  Ray), so a Ray worker can run it: it prunes, fine-tunes and measures (core.experiment.run), and hands back the
  run's output;
- the driver records each trial as it lands (on_done): its run folder (inside the search's) written and claimed,
  its record in the experiment store with the search as parent (core.runs.record, as run_and_record does), and
  its entry in search.json — so a killed search keeps every trial that finished, and a worker of a joined cluster
  needs neither this workspace nor its store; a cancelled search keeps what finished, the rest marked cancelled;
- a trial the solver cannot meet, or that fails for its own reasons where it runs (a PruneLabError), is recorded
  failed with its config and the message; the search goes on;
- at the end the finished trials' ONNX files are timed together with the baseline in interleaved rounds on this
  machine: timings taken on different machines, or at different times, are not comparable.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.allocate import Target
from core.config import PruneConfig
from core.data import id_bound
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.executors import Executor, Outcome, here
from core.experiment import RunOutput, run
from core.latency import measure_interleaved
from core.metric_keys import LATENCY_DECIMALS, LATENCY_MS
from core.models import load
from core.run_folder import read_identity
from core.runs import new_run_dir, record
from core.search_report import (
    CHART_FILE,
    DRIVER,
    FIGURES,
    PARETO_FILE,
    SEARCH_FILE,
    SearchReport,
    pending,
    read_search,
)
from core.search_spec import SearchSpec, Trial
from core.sensitivity import SweepSpec, sweep
from core.spec import ModelSpec
from core.store_rows import numbers
from core.workflows import SolveOutcome, SolveRequest, record_output, solve
from core.workflows.solve import baseline_onnx

__all__ = ["CHART_FILE", "DRIVER", "PARETO_FILE", "SEARCH_FILE", "SearchReport", "SearchSpec", "Trial", "read_search",
           "run_search", "run_trial"]

LATENCY_BATCH = 1  # the batch size trials are timed and compared at
OnTrial = Callable[[dict[str, Any], int, int], None]  # (the trial's entry, trials finished, trials in all)
StageProgress = Callable[[str, int, int], None]  # (stage, done, total): the sweep, the solving, the timing


def run_trial(job: dict[str, Any]) -> RunOutput:
    """One trial where the executor runs it: the config applied to the shared model, fine-tuned and measured (the
    driver records it)."""
    out = run(job["model"].get(), PruneConfig.from_json(job["config"]), batches=(LATENCY_BATCH,))
    out.prediction = job["prediction"]
    return out


def run_search(search: SearchSpec, executor: Executor, *, model: ModelSpec | None = None,
               on_trial: OnTrial | None = None, cancelled: Callable[[], bool] | None = None,
               progress: StageProgress | None = None,
               on_start: Callable[[SearchReport], None] | None = None) -> SearchReport:
    """Run the search (see the module docstring) and return its report, also written into its folder.

    model: the loaded model if at hand (it must be search.model's); on_trial(entry, finished, total) after each
    trial lands; cancelled() is polled between trials: once true, trials not yet started are marked cancelled;
    on_start(report) once its folder and search.json exist, before any work (a job links the search it runs)."""
    spec = model or load(search.model)
    if spec.name != search.model:
        raise PruneLabError(f"the search is of {search.model}, not of the model given ({spec.name})")
    say = progress or (lambda stage, done, total: None)
    folder = new_run_dir(spec.name, "search")  # under the workspace's runs: its trials are handed out from there
    report = SearchReport(folder.name, folder, search, executor.name, trials=[pending(t) for t in search.trials()],
                          model_fingerprint=spec.fingerprint)
    report.save()
    if on_start is not None:
        on_start(report)
    stop = cancelled or (lambda: False)
    try:
        _run(spec, report, executor, _Tally(report, on_trial), stop, say)
    except BaseException:  # Ctrl+C, a cancel that stops the process, or a bug: what finished stays recorded
        report.status = "cancelled" if stop() else "interrupted"
        report.save()
        raise
    return report


class _Tally:
    """Saves a trial's entry as it lands and tells on_trial how many of all have landed."""

    def __init__(self, report: SearchReport, on_trial: OnTrial | None) -> None:
        self.report, self.on_trial, self.finished = report, on_trial, 0

    def landed(self, entry: dict[str, Any]) -> None:
        self.finished += 1
        self.report.save()
        if self.on_trial is not None:
            self.on_trial(entry, self.finished, len(self.report.trials))


def _run(spec: ModelSpec, report: SearchReport, executor: Executor, tally: _Tally, cancelled: Callable[[], bool],
         say: StageProgress) -> None:
    table = _sweep_table(spec, report.spec, executor, say)
    jobs = _solve_all(spec, report, table, tally, cancelled, say)
    shared = executor.share(spec) if jobs else None  # sent to a cluster once, not per trial
    jobs = [(key, {**job, "model": shared}) for key, job in jobs]

    def on_done(outcome: Outcome, done: int, total: int) -> None:
        tally.landed(_landed(report.trial(outcome.key), outcome, report.id))

    outcomes = executor.run(run_trial, jobs, on_done=on_done, cancelled=cancelled)
    for outcome in outcomes:
        if outcome.cancelled:
            report.trial(outcome.key).update(status="cancelled", message="the search was cancelled first")
    report.status = "cancelled" if any(t["status"] == "cancelled" for t in report.trials) else "done"
    _time_together(spec, report, say)
    report.write_fronts(report.find_fronts())
    report.save()


def _sweep_table(spec: ModelSpec, search: SearchSpec, executor: Executor, say: StageProgress):
    """The sensitivity table the sensitivity strategy solves on (a cached sweep, run once), else None."""
    if "sensitivity" not in search.strategies:
        return None
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, search.method, search.criterion)
    return sweep(spec, sweep_spec, lambda done, total: say("sensitivity sweep", done, total), executor=executor)


def _solve_all(spec: ModelSpec, report: SearchReport, table, tally: _Tally, cancelled: Callable[[], bool],
               say: StageProgress) -> list[tuple[str, dict[str, Any]]]:
    """Each trial's config from the budget solver: the executor's jobs (key, plain data); a trial the solver
    refuses or cannot meet is recorded failed here (it lands once the solving is over)."""
    cost_model = build_cost_model(spec.model, spec.example_input, report.spec.method)  # shared by every solve
    jobs, refused = [], []
    trials = report.spec.trials()
    for n, trial in enumerate(trials):
        say("solving budgets", n, len(trials))
        if cancelled():
            break
        job = _solve_one(spec, report, trial, table, cost_model)
        if job is None:
            refused.append(report.trial(trial.key))
        else:
            jobs.append((trial.key, job))
    solved = {key for key, _ in jobs}
    for entry in report.trials:
        if entry["status"] == "pending" and entry["key"] not in solved:
            entry.update(status="cancelled", message="the search was cancelled first")  # never solved
    say("done", 1, 1)  # the stages before the trials are over (a progress bar closes)
    for entry in refused:
        tally.landed(entry)
    return jobs


def _solve_one(spec: ModelSpec, report: SearchReport, trial: Trial, table, cost_model) -> dict[str, Any] | None:
    """A trial's job (its config JSON and the predicted drop), or None: the solver refused it or cannot meet its
    target (then recorded failed, with the closest config)."""
    entry = report.trial(trial.key)
    try:
        outcome = solve(spec, _request(report.spec, trial, table), cost_model=cost_model)
    except PruneLabError as e:  # e.g. a latency target on a model that cannot be exported
        entry.update(status="failed", message=str(e), where=here())
        return None
    config = _config(spec, outcome, report.spec.finetune_epochs)
    folder = report.folder / f"{report.id}-{trial.key}"  # the store id follows the folder's name
    entry.update(config=config.to_dict(), folder=str(folder))
    if not outcome.allocation.met:
        entry.update(where=here())
        _record_failed(entry, config, report.id, _unmet(trial, outcome))
        return None
    return {"config": config.to_json(), "prediction": outcome.prediction}


def _request(search: SearchSpec, trial: Trial, table) -> SolveRequest:
    return SolveRequest(Target(trial.kind, trial.target), trial.strategy, search.method, search.criterion,
                        table=table, seed=trial.seed, latency_batch=LATENCY_BATCH,
                        hardware_aware=search.hardware_aware)


def _config(spec: ModelSpec, outcome: SolveOutcome, epochs: int) -> PruneConfig:
    """The solved config with the search's fine-tuning epochs (the model's recipe otherwise)."""
    config = outcome.config(spec)
    return dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, epochs=epochs))


def _unmet(trial: Trial, outcome: SolveOutcome) -> str:
    """Why a trial is not run: its target cannot be met, and how close the solver came."""
    kind = {"params": "params", "size_mb": "size_bytes"}.get(trial.kind, "flops")  # an estimate's key
    kept = outcome.allocation.estimate[kind] / outcome.base_estimate[kind]
    return (f"target {trial.kind} {trial.target:g} cannot be met within the bounds by the {trial.strategy} "
            f"strategy (the closest config keeps {kept:.3f} of the {kind})")


def _record_failed(entry: dict[str, Any], config: PruneConfig, parent: str, message: str) -> None:
    """Record a trial as failed in the store with its message (its folder keeps the config)."""
    try:
        with record(Path(entry["folder"]), config, parent):
            raise PruneLabError(message)
    except PruneLabError:
        pass  # the record marked the row failed with the message (or the folder could not be claimed: said there)
    entry.update(status="failed", message=message, id=_record_id(entry))


def _record_id(entry: dict[str, Any]) -> str | None:
    identity = read_identity(Path(entry["folder"]))
    return identity.id if identity else None


def _landed(entry: dict[str, Any], outcome: Outcome, parent: str) -> dict[str, Any]:
    """A trial's entry once the executor has its outcome, recorded: its run's files and figures, or its message."""
    entry.update(where=outcome.where, attempts=outcome.attempts)
    config = PruneConfig.from_dict(entry["config"])
    if not outcome.ok:
        _record_failed(entry, config, parent, outcome.error or "")
        return entry
    out: RunOutput = outcome.value
    try:
        record_output(out, Path(entry["folder"]), config, parent)
    except PruneLabError as e:  # the results could not be kept: this trial failed, the search goes on
        entry.update(status="failed", message=str(e), id=_record_id(entry))
        return entry
    metrics = json.loads(out.metrics_json())
    entry.update(status="done", message=None, id=_record_id(entry), **{k: metrics["pruned"].get(k) for k in FIGURES},
                 run_latency_ms=numbers(metrics)[LATENCY_MS])
    return entry


def _time_together(spec: ModelSpec, report: SearchReport, say: StageProgress) -> None:
    """Every done trial's model.onnx and the baseline's, timed in interleaved rounds on this machine (batch 1,
    one thread): their latency_ms and the baseline's."""
    files = {t["key"]: Path(t["folder"]) / "model.onnx" for t in report.done()}
    onnx = {k: p.read_bytes() for k, p in files.items() if p.is_file()}
    if not onnx:
        return
    say("timing trials together", 0, 1)
    timed = measure_interleaved({"baseline": baseline_onnx(spec), **onnx}, tuple(spec.example_input.shape[1:]),
                                batch=LATENCY_BATCH, threads=1, max_id=id_bound(spec.example_input))
    for key in onnx:
        report.trial(key).update(latency_ms=round(timed[key].median_ms, LATENCY_DECIMALS), latency_where=DRIVER)
    report.baseline_latency_ms = round(timed["baseline"].median_ms, LATENCY_DECIMALS)
    say("done", 1, 1)

"""What a background job can do (core.jobs runs one of these in a worker process): each task takes the loaded
model, a progress callback (stage, done, total) and its own arguments, and returns something JSON can hold.
Results that are large (a sweep's table, a run folder, a timing table) go where the CLI puts them too — the
caches and the store — and the task returns how to find them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core import executors, experiment, hardware, models, workflows
from core.config import PruneConfig
from core.deploy import deploy_folder
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.jobs import ModelRef
from core.run_folder import read_identity
from core.run_progress import overall_progress
from core.search import run_search
from core.search_runs import link
from core.search_spec import SearchSpec
from core.sensitivity import SweepSpec, sweep
from core.spec import ModelSpec

StageProgress = Callable[[str, int, int], None]


def load_model(ref: ModelRef) -> ModelSpec:
    """The job's model: a registry name, or the user's own model loaded with the arguments they gave (renamed to
    its dashboard handle, as the server names it)."""
    if ref.ref is None:
        return models.load(ref.name)
    loaded = models.load(ref.ref, weights=ref.weights, trust_pickle=ref.trust_pickle, data=ref.data)
    return replace(loaded, name=ref.name)


def run_sweep(spec: ModelSpec, progress: StageProgress, sweep_spec: SweepSpec) -> None:
    """A sensitivity sweep; its table lands in the sweep cache, where the page reads it."""
    sweep(spec, sweep_spec, lambda d, t: progress("sensitivity sweep", d, t))


def run_and_record(spec: ModelSpec, progress: StageProgress, config: PruneConfig, prediction: dict | None,
                   base: experiment.Baseline, lut: hardware.LatencyTable | None) -> str:
    """Prune, fine-tune and measure per config, recorded in the store as it happens (core.workflows, as the CLI
    does), reporting the whole run's progress on one bar; the run's id."""
    _, paths = workflows.run_and_record(spec, config, progress=overall_progress(progress, config),
                                        prediction=prediction, base=base, hardware=lut)
    folder = paths["metrics.json"].parent
    identity = read_identity(folder)  # its store id: the folder's name, made unique by the store
    if identity is None or identity.id is None:  # pages list runs from the store: say where the files are
        raise PruneLabError(f"the run was measured and written to {folder}, but the experiment store could not "
                            "record it")
    return identity.id


def measure_deployable(spec: ModelSpec, progress: StageProgress, run_path: str) -> int:
    """Every deployable form of a run, measured and written beside it (deploy.json); the batch timed."""
    progress("measuring deployable forms", 0, 1)
    return deploy_folder(Path(run_path), spec=spec).batch


def time_widths(spec: ModelSpec, progress: StageProgress, batch: int) -> int:
    """The width-latency table (cached on disk by core.hardware); the channel multiple it finds fast."""
    units = list(build_cost_model(spec.model, spec.example_input, "channel").units)
    table = hardware.load_or_build(spec, units, batch, progress=lambda d, t: progress("timing layer widths", d, t))
    return table.round_to()


def solve_on_hardware(spec: ModelSpec, progress: StageProgress, request: workflows.SolveRequest, scores,
                      lut: hardware.LatencyTable, base: experiment.Baseline) -> dict:
    """A hardware-aware budget solve (core.workflows.solve): candidates per alignment, each built and timed."""
    outcome = workflows.solve(spec, request, lambda stage, d, t: progress("timing candidates", d, t), scores=scores,
                              lut=lut, base=base)
    return {"ratios": outcome.allocation.ratios, "met": outcome.allocation.met, "report": outcome.candidates}


CANCELLED_FILE = "cancelled"  # core.jobs.cancel's mark in a job's folder, made just before it signals the worker
TRIALS_STAGE = "trials"  # the progress stage while the search's trials run: done = trials landed, of all


class _SearchProgress:
    """core.search's stages as the job's progress (its "done" becomes the trials' count so far), and each landed
    trial as trials done of all."""

    def __init__(self, progress: StageProgress, total: int) -> None:
        self.progress, self.total, self.landed = progress, total, 0

    def stage(self, name: str, done: int, of: int) -> None:
        if name == "done":  # the stages before (or after) the trials are over
            name, done, of = TRIALS_STAGE, self.landed, self.total
        self.progress(name, done, of)

    def trial(self, entry: dict, done: int, of: int) -> None:
        self.landed = done
        self.progress(TRIALS_STAGE, done, of)


def run_search_job(spec: ModelSpec, progress: StageProgress, search: SearchSpec, executor: str = "local",
           address: str | None = None, job_folder: str | None = None) -> dict:
    """A search (core.search.run_search) on the named executor; its trials land in the store and its search.json
    as they finish. job_folder: the job's folder, where the search's folder is linked once it exists (a page
    finds the running search there) and whose cancel mark the search polls between trials."""
    folder = Path(job_folder) if job_folder else None
    watch = _SearchProgress(progress, len(search.trials()))
    chosen = executors.get(executor, address)
    try:
        report = run_search(search, chosen, model=spec, on_trial=watch.trial, progress=watch.stage,
                            cancelled=lambda: folder is not None and (folder / CANCELLED_FILE).exists(),
                            on_start=lambda started: folder is not None and link(folder, started.folder))
    finally:
        chosen.close()  # a Ray cluster started for this search stops with it
    return {"search": report.id, "folder": str(report.folder), "status": report.status}


TASKS: dict[str, Callable[..., Any]] = {
    "sweep": run_sweep, "run": run_and_record, "deploy": measure_deployable, "lut": time_widths,
    "hw-solve": solve_on_hardware, "search": run_search_job,
}

"""Run and record: one experiment pruned, fine-tuned and measured (core.experiment.run), its files written into its
folder and the run recorded in the experiment store (core.runs.record) — what `prunelab prune/apply` and the Tune
page's run job both do."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.config import PruneConfig
from core.errors import PruneLabError
from core.experiment import Baseline, RunOutput, StageProgress, run
from core.runs import new_run_dir, record
from core.spec import ModelSpec


def run_and_record(spec: ModelSpec, config: PruneConfig, outdir: Path | None = None, threads: int = 1,
                   progress: StageProgress | None = None, batches: tuple[int, ...] | None = None,
                   parent: str | None = None, force: bool = False, prediction: dict | None = None,
                   base: Baseline | None = None, hardware=None,
                   warn: Callable[[str], None] | None = None) -> tuple[RunOutput, dict[str, Path]]:
    """Run `config` and record it; the output and the files written (name -> path).

    outdir: the run's folder (claimed first, see core.runs.record), or None for a new folder under the
    workspace's runs; force moves a run already there aside; parent: the recorded run the config comes from;
    prediction: what was predicted before measuring, recorded with the metrics; base: the baseline's measurements
    if already taken; hardware: a width-latency table (checks whether fast widths would measure faster). Files
    that cannot all be written fail the run with the reason."""
    folder = Path(outdir) if outdir is not None else new_run_dir(spec.name, config.method)
    with record(folder, config, parent, replace=force, **({"warn": warn} if warn else {})) as finish:
        out = run(spec, config, progress, base=base, threads=threads, hardware=hardware, batches=batches)
        out.prediction = prediction
        paths = _keep(out, folder, finish)
    return out, paths


def record_output(out: RunOutput, folder: Path, config: PruneConfig, parent: str | None = None) -> dict[str, Path]:
    """A run measured elsewhere (a search trial on a worker), its folder claimed, its files written and its record
    finished here, as run_and_record does for a run of its own; the files written."""
    with record(folder, config, parent) as finish:
        return _keep(out, folder, finish)


def _keep(out: RunOutput, folder: Path, finish: Callable[[dict], None]) -> dict[str, Path]:
    """The run's files written into folder, then its record finished with its metrics (files that cannot all be
    written fail the run with the reason)."""
    try:
        paths = out.write(folder)
    except OSError as e:
        raise PruneLabError(f"cannot write results into {folder}: {e}") from None
    finish(json.loads(out.metrics_json()))
    return paths

"""One pruning experiment end to end: prune a copy, re-estimate BatchNorm, fine-tune, export, measure.

The command line and the dashboard both call run(); it reports progress through a callback and
returns everything measured, so either front end only draws.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime
import torch
from torch import nn

from core.config import PruneConfig
from core.evaluate import evaluate
from core.export import deployable, export_onnx
from core.files import write_atomic
from core.finetune import Recipe, fit
from core.latency import measure as measure_latency
from core.metrics import static_metrics
from core.models import ModelSpec
from core.prune import apply

# progress(stage, done, total): stage is a short human label ("fine-tuning"), done/total its steps
StageProgress = Callable[[str, int, int], None]
LATENCY_BATCHES = (1, 32)


@dataclass
class RunOutput:
    """What run() produced: the pruned model, its ONNX file and every measurement."""

    config: PruneConfig
    model: nn.Module
    onnx: bytes
    baseline: dict
    pruned: dict
    removed: dict[str, int]
    finetune_losses: list[float] = field(default_factory=list)

    def metrics_json(self) -> str:
        return json.dumps({"baseline": self.baseline, "pruned": self.pruned, "removed": self.removed,
                           "finetune_losses": self.finetune_losses}, indent=2, sort_keys=True) + "\n"

    def write(self, outdir: Path) -> dict[str, Path]:
        """Write config.json, model.onnx and metrics.json into outdir, each atomically; metrics.json
        comes last, so a folder that has it is complete."""
        paths = {n: Path(outdir) / n for n in ("config.json", "model.onnx", "metrics.json")}
        self.config.save(paths["config.json"])
        write_atomic(paths["model.onnx"], self.onnx)
        write_atomic(paths["metrics.json"], self.metrics_json().encode())
        return paths


def measure(model: nn.Module, spec: ModelSpec, onnx: bytes, threads: int = 1) -> dict:
    """Every metric of a (deployable) model: size, FLOPs, accuracy, onnxruntime latency."""
    shape = tuple(spec.example_input.shape[1:])
    metrics: dict = static_metrics(model, spec.example_input)
    metrics.update(evaluate(model, spec.split.test_x, spec.split.test_y))
    metrics["onnx_bytes"] = len(onnx)
    for batch in LATENCY_BATCHES:
        lat = measure_latency(onnx, shape, batch=batch, threads=threads, min_seconds=0.3)
        suffix = "" if batch == 1 else f"_batch{batch}"
        metrics[f"latency_ms{suffix}"] = round(lat.median_ms, 5)
        metrics[f"latency_p90_ms{suffix}"] = round(lat.p90_ms, 5)
    metrics["latency_threads"] = threads
    metrics["runtime"] = f"onnxruntime {onnxruntime.__version__} CPU, torch {torch.__version__}"
    return metrics


def baseline(spec: ModelSpec, threads: int = 1) -> dict:
    """Metrics of the unpruned base model (exported and timed like any pruned one)."""
    onnx, _ = export_onnx(spec.model, spec.example_input)
    return measure(spec.model, spec, onnx, threads)


def run(
    spec: ModelSpec,
    config: PruneConfig,
    progress: StageProgress | None = None,
    base_metrics: dict | None = None,
    threads: int = 1,
) -> RunOutput:
    """Prune a copy of spec.model per config, fine-tune it, export it and measure it and the baseline."""
    say = progress or (lambda stage, done, total: None)
    say("measuring baseline", 0, 1)
    base_metrics = base_metrics or baseline(spec, threads)
    say("pruning", 0, 1)
    result = apply(spec, config)
    losses: list[float] = []
    if config.finetune.epochs:
        recipe = Recipe(epochs=config.finetune.epochs, lr=config.finetune.lr, batch_size=config.finetune.batch_size)
        losses = fit(result.model, spec.split.train_x, spec.split.train_y, recipe, seed=config.seed,
                     progress=lambda d, t, info: say("fine-tuning", d, t))
    say("exporting ONNX", 0, 1)
    model = deployable(result.model)
    onnx, _ = export_onnx(model, spec.example_input)
    say("measuring", 0, 1)
    pruned = measure(model, spec, onnx, threads)
    say("done", 1, 1)
    return RunOutput(config, model, onnx, base_metrics, pruned, result.removed, losses)

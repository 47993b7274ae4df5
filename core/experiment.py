"""One pruning experiment end to end: prune a copy, re-estimate BatchNorm, fine-tune, export, measure.

The command line and the dashboard both call run(); it reports progress through a callback and
returns everything measured, so either front end only draws.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime
import torch
from torch import nn

from core import schedule
from core.config import PruneConfig
from core.data import id_bound
from core.deploy import onnx_accuracy, quantize_int8
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.export import deployable, export_onnx
from core.export_formats import weights_bytes
from core.files import write_atomic
from core.graph import channel_units, emptied, kept_channels, ratio_for
from core.latency import measure_cached, measure_interleaved, measure_torch
from core.metric_keys import LATENCY_DECIMALS, Runtime, latency_key
from core.metrics import static_metrics
from core.models import initial_state
from core.prune import calibration, check_config_matches
from core.prune.channel import apply_channel
from core.run_folder import INT8_FILE, WEIGHTS_FILE, config_sha256, read_identity
from core.spec import ModelSpec, require_data

# progress(stage, done, total): stage is a short human label ("fine-tuning"), done/total its steps
StageProgress = Callable[[str, int, int], None]
LATENCY_BATCHES = (1, 32)
INT8_CALIBRATION = 256  # training inputs onnxruntime's static quantisation calibrates activation ranges on


@dataclass
class RunOutput:
    """What run() produced, in memory: the pruned model object and its ONNX bytes (which no record holds), and
    every measurement. It is never listed nor read back: once recorded (core.runs.record), its config and
    metrics_json() are the config and metrics of the run's record, core.store.Experiment, the one run type the
    store returns and every surface reads."""

    config: PruneConfig
    model: nn.Module
    onnx: bytes
    baseline: dict
    pruned: dict
    removed: dict[str, int]
    finetune_losses: list[float] = field(default_factory=list)
    prediction: dict | None = None  # what was predicted before measuring (e.g. from a sensitivity sweep)
    aligned_alternative: dict | None = None  # a nearby config of fast widths that measured faster
    trajectory: list[dict] = field(default_factory=list)  # core.schedule's measurements per step
    clamped: list[str] = field(default_factory=list)  # units whose ratio would have emptied them: one kept
    run: dict | None = None  # which run wrote these metrics (core.run_folder), set by write()
    int8: dict | None = None  # the int8 model's measurements, when the config quantises after its last stage
    int8_onnx: bytes = b""
    example_input: torch.Tensor | None = None  # the model's example input: recorded with its weights (write())

    def metrics_json(self) -> str:
        data = {"baseline": self.baseline, "pruned": self.pruned, "removed": self.removed,
                "finetune_losses": self.finetune_losses, "trajectory": self.trajectory}
        if self.run:
            data["run"] = self.run
        if self.prediction:
            data["prediction"] = self.prediction
        if self.aligned_alternative:
            data["aligned_alternative"] = self.aligned_alternative
        if self.clamped:
            data["clamped"] = self.clamped
        if self.int8:
            data["int8"] = self.int8
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def write(self, outdir: Path) -> dict[str, Path]:
        """Write config.json, model.onnx, model.safetensors (the pruned module's weights, core.export_formats) and
        metrics.json into outdir, each atomically; metrics.json comes last, so a folder that has it is complete.
        In a folder claimed by core.runs.record, metrics.json names the run that owns the folder (its uid and
        config hash), so the store takes it as that run's own; a folder claimed by a run of another config is
        refused."""
        identity = read_identity(Path(outdir))
        if identity is not None and identity.config_sha256 not in (None, config_sha256(self.config)):
            raise PruneLabError(f"{outdir} belongs to run {identity.id or identity.uid[:8]}, of another config")
        self.run = identity.stamp() if identity is not None and identity.config_sha256 else None
        names = ("config.json", *(["model.onnx"] if self.onnx else []), *([INT8_FILE] if self.int8_onnx else []),
                 *([WEIGHTS_FILE] if self.example_input is not None else []), "metrics.json")
        paths = {n: Path(outdir) / n for n in names}
        self.config.save(paths["config.json"])
        if self.onnx:  # empty when the export failed (metrics.json says why)
            write_atomic(paths["model.onnx"], self.onnx)
        if self.int8_onnx:
            write_atomic(paths[INT8_FILE], self.int8_onnx)
        if WEIGHTS_FILE in paths:
            write_atomic(paths[WEIGHTS_FILE], weights_bytes(self.model, self.example_input))
        write_atomic(paths["metrics.json"], self.metrics_json().encode())
        return paths


def _static(model: nn.Module, spec: ModelSpec, onnx: bytes, onnx_error: str = "") -> dict:
    """Size, FLOPs and accuracy of a deployable model, and its ONNX file size (or why there is none)."""
    metrics: dict = static_metrics(model, spec.example_input)
    if not onnx:
        metrics["onnx_error"] = onnx_error
    if spec.has_data:
        metrics.update(evaluate(model, spec.split.test_x, spec.split.test_y))
    else:  # a reference architecture with random weights: accuracy is not available, not zero
        metrics.update(accuracy=None, loss=None)
    if spec.metric is not None:  # e.g. embedding fidelity of a sentence encoder
        metrics.update(spec.metric(model))
    metrics["onnx_bytes"] = len(onnx)
    return metrics


def default_batches(spec: ModelSpec) -> tuple[int, ...]:
    """Batch sizes latency is measured at unless the user picks: 1 and 32 for the sample models; 1 for
    the 224x224 reference zoo, where one batch of 32 takes seconds on a CPU thread."""
    return LATENCY_BATCHES if spec.has_data else (1,)


def _record(metrics: dict, timed: dict, runtime: Runtime, batch: int) -> None:
    """Each timed model's median and p90 (ms, 5 decimals) into its metrics, under core.metric_keys names."""
    for key, lat in timed.items():
        metrics[key][latency_key(batch, "median", runtime)] = round(lat.median_ms, LATENCY_DECIMALS)
        metrics[key][latency_key(batch, "p90", runtime)] = round(lat.p90_ms, LATENCY_DECIMALS)


def _add_latency(metrics: dict[str, dict], onnx: dict[str, bytes], torch_models: dict[str, nn.Module],
                 spec: ModelSpec, threads: int, batches: tuple[int, ...]) -> None:
    """Time the ONNX models in interleaved rounds (see core.latency) and record median and p90 per batch;
    the same for the torch models (eager PyTorch, for comparison)."""
    shape, max_id = tuple(spec.example_input.shape[1:]), id_bound(spec.example_input)
    onnx = {k: v for k, v in onnx.items() if v}  # a model whose export failed has torch figures only
    for batch in batches:
        if onnx:
            _record(metrics, measure_interleaved(onnx, shape, batch=batch, threads=threads, max_id=max_id),
                    "onnxruntime", batch)
        _record(metrics, measure_torch(torch_models, shape, batch=batch, threads=threads, max_id=max_id), "torch",
                batch)
    for m in metrics.values():
        m["latency_threads"] = threads
        m["latency_batches"] = list(batches)
        m["runtime"] = f"onnxruntime {onnxruntime.__version__} CPU, torch {torch.__version__}"


def measure(model: nn.Module, spec: ModelSpec, onnx: bytes, threads: int = 1,
            batches: tuple[int, ...] | None = None) -> dict:
    """Every metric of one deployable model: size, FLOPs, accuracy, onnxruntime latency (cached per
    exported file, see core.latency.measure_cached) and eager-torch latency for comparison."""
    metrics = _static(model, spec, onnx)
    shape, max_id = tuple(spec.example_input.shape[1:]), id_bound(spec.example_input)
    for batch in batches or default_batches(spec):
        if onnx:
            _record({"m": metrics}, {"m": measure_cached(onnx, shape, batch, threads, max_id)}, "onnxruntime", batch)
        torch_lat = measure_torch({"m": model}, shape, batch=batch, threads=threads, max_id=max_id)
        _record({"m": metrics}, torch_lat, "torch", batch)
    metrics.update(latency_threads=threads, latency_batches=list(batches or default_batches(spec)),
                   runtime=f"onnxruntime {onnxruntime.__version__} CPU, torch {torch.__version__}")
    return metrics


@dataclass(frozen=True)
class Baseline:
    """The unpruned model's measurements and its ONNX file (kept to time it again beside a pruned one)."""

    metrics: dict
    onnx: bytes


def baseline(spec: ModelSpec, threads: int = 1, batches: tuple[int, ...] | None = None) -> Baseline:
    """Metrics of the unpruned base model, exported and timed like any pruned one."""
    onnx, error = try_export(spec.model, spec.example_input)
    metrics = measure(spec.model, spec, onnx, threads, batches)
    if error:
        metrics["onnx_error"] = error
    return Baseline(metrics, onnx)


def try_export(model: nn.Module, example_input: torch.Tensor) -> tuple[bytes, str]:
    """(ONNX bytes, "") or (b"", why the export failed): a model torch runs but the exporter cannot handle
    still gets its torch measurements (size, FLOPs, accuracy, eager latency)."""
    try:
        return export_onnx(model, example_input)[0], ""
    except PruneLabError as e:
        if "SystemError" not in str(e):
            return b"", str(e)
    # CPython 3.11 can fail to compile the exporter's generated code while another thread compiles too
    # (two dashboard sessions exporting at once): a SystemError, not the model's fault — try once more
    try:
        return export_onnx(model, example_input)[0], ""
    except PruneLabError as e:
        return b"", str(e)


FINETUNE_LOSS_POINTS = 0.1  # a fine-tune ending this many accuracy points (or more) below its start is reported


def _accuracy_before_finetune(config: PruneConfig, trajectory: list[dict]) -> float | None:
    """Test accuracy right after the last cut, before the fine-tuning that followed it (None without fine-tuning,
    without data, or for the dynamic schedule, which prunes while it trains)."""
    if not config.finetune.epochs or config.schedule.kind == "dynamic":
        return None
    return next((p["accuracy"] for p in reversed(trajectory) if p["phase"] == "pruned"), None)


def finetune_verdict(pruned: dict) -> str | None:
    """One sentence when fine-tuning ended below where it started (a run's pruned metrics), else None: the figure
    reported is the fine-tuned one, so the user must hear that the model before it was better."""
    before, after = pruned.get("accuracy_before_finetune"), pruned.get("accuracy")
    if before is None or after is None or 100 * (before - after) < FINETUNE_LOSS_POINTS:
        return None
    return (f"fine-tuning lowered test accuracy from {100 * before:.2f}% (right after the cut) to {100 * after:.2f}%: "
            "the recipe does not suit this model; try a smaller learning rate, or no fine-tuning")


def run(
    spec: ModelSpec,
    config: PruneConfig,
    progress: StageProgress | None = None,
    base: Baseline | None = None,
    threads: int = 1,
    hardware=None,
    batches: tuple[int, ...] | None = None,
) -> RunOutput:
    """Prune a copy of spec.model per config, fine-tune, export, and measure it beside the baseline.

    Latency of the baseline and the pruned model is measured again here, in interleaved rounds, so
    the two figures in the output were taken under the same machine load.
    """
    say = progress or (lambda stage, done, total: None)
    check_config_matches(spec, config)  # before any slow work
    if config.finetune.epochs:
        require_data(spec, "fine-tuning")
    if config.finetune.rewind:
        initial_state(spec)  # fails now, not after the baseline, if the initial weights are unknown
    say("measuring baseline", 0, 1)
    batches = batches or default_batches(spec)
    base = base or baseline(spec, threads, batches)
    trained = schedule.train(spec, config, say)
    say("exporting ONNX", 0, 1)
    model = deployable(trained.model)
    onnx, onnx_error = try_export(model, spec.example_input)
    say("measuring", 0, 1)
    metrics = {"baseline": dict(base.metrics), "pruned": _static(model, spec, onnx, onnx_error)}
    if (before := _accuracy_before_finetune(config, trained.trajectory)) is not None:
        metrics["pruned"]["accuracy_before_finetune"] = before
    int8 = b""
    if config.quantize == "int8":
        say("quantising to int8", 0, 1)
        int8, metrics["int8"] = _int8(spec, config, onnx, onnx_error)
    _add_latency(metrics, {"baseline": base.onnx, "pruned": onnx, **({"int8": int8} if int8 else {})},
                 {"baseline": spec.model, "pruned": model}, spec, threads, batches)
    out = RunOutput(config, model, onnx, metrics["baseline"], metrics["pruned"], trained.removed, trained.losses,
                    trajectory=trained.trajectory, example_input=spec.example_input, int8=metrics.get("int8"),
                    int8_onnx=int8)
    out.clamped = emptied(config.technique.units(spec.model, spec.example_input), config.ratios)
    if hardware is not None and config.technique.hardware_aware and onnx:
        say("checking aligned widths", 0, 1)
        out.aligned_alternative = aligned_alternative(spec, config.ratios, onnx, hardware)
    say("done", 1, 1)
    return out


def _int8(spec: ModelSpec, config: PruneConfig, onnx: bytes, onnx_error: str) -> tuple[bytes, dict]:
    """The pruned model's ONNX quantised to int8 by onnxruntime (core.deploy.quantize_int8), and what it measures:
    its file size and, with data, its test accuracy run in onnxruntime (the int8 model itself, not an estimate)."""
    if not onnx:
        raise PruneLabError(f"int8 quantisation needs the pruned model's ONNX export, which failed: {onnx_error}")
    calib = calibration(spec, INT8_CALIBRATION, config.seed).x.numpy()
    int8 = quantize_int8(onnx, calib)
    metrics = {"onnx_bytes": len(int8), "how": "onnxruntime static quantisation (QDQ: per-channel int8 weights, "
               f"uint8 activations calibrated on {len(calib)} training inputs); accuracy run in onnxruntime"}
    if spec.has_data:
        metrics["accuracy"] = onnx_accuracy(int8, spec.split.test_x.numpy(), spec.split.test_y.numpy())
    return int8, metrics


def aligned_alternative(spec: ModelSpec, ratios: dict[str, float], onnx: bytes, table) -> dict | None:
    """If some unit keeps a width the runtime is slow at, time the config with each such width snapped down
    to the nearest fast one (core.hardware) against this one; report it when it is faster (>3%)."""
    units = {u.name: u for u in channel_units(spec.model, spec.example_input)}
    kept = {n: kept_channels(u, ratios.get(n, 0.0)) for n, u in units.items()}
    fast = {n: table.snap(n, k) if n in table.widths else k for n, k in kept.items()}
    if fast == kept:
        return None  # every width is already fast
    snapped = {n: ratio_for(units[n], w) for n, w in fast.items()}
    model = copy.deepcopy(spec.model)
    apply_channel(model, {n: r for n, r in snapped.items() if r > 0}, spec.example_input)
    alt_onnx, _ = export_onnx(model, spec.example_input)
    timed = measure_interleaved({"config": onnx, "aligned": alt_onnx}, tuple(spec.example_input.shape[1:]),
                                batch=table.batch, threads=table.threads, max_id=id_bound(spec.example_input))
    if timed["aligned"].median_ms >= timed["config"].median_ms * 0.97:
        return None
    return {"ratios": {n: r for n, r in snapped.items() if r > 0}, "batch": table.batch,
            "latency_ms": timed["aligned"].median_ms, "config_latency_ms": timed["config"].median_ms,
            "speedup": timed["config"].median_ms / timed["aligned"].median_ms}

"""The one place that names and parses metric keys, and a typed view of the metrics a run records.

metrics.json holds, per model ("baseline", "pruned"), a flat dict: params, sizes, FLOPs, task measures (accuracy,
loss, a language model's perplexity, a sentence encoder's fidelity) and latency under keys such as
`torch_latency_p90_ms_batch32` (runtime prefix, statistic, batch suffix). Task measures are registered as
TaskMetric objects (label, format, which way is better): the CLI, Results, Experiments, sweeps and the budget
solver read them here instead of special-casing a key. The format
was once spelled out in five files; now every writer and reader asks LatencyKey / latency_key here. The on-disk
keys are unchanged, so old runs and stores load as they are: the views keep the dict they were read from and
write it back untouched.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Runtime = Literal["onnxruntime", "torch"]
Stat = Literal["median", "p90"]

PARAMS = "params"  # trainable tensor elements
NONZERO_PARAMS = "nonzero_params"  # with pruning masks applied
SIZE_BYTES = "size_bytes"  # dense fp32 state dict, bytes
FLOPS = "flops"  # dense FLOPs of one forward pass at batch 1 (core.metrics.flops_by_module)
SPARSE_FLOPS = "sparse_flops"  # FLOPs if multiplications by zero weights were skipped
ONNX_BYTES = "onnx_bytes"  # exported ONNX file, bytes (0 when the export failed)
ONNX_ERROR = "onnx_error"  # why the export failed; present only then
ACCURACY = "accuracy"  # test accuracy, 0..1; None for a model without data
LOSS = "loss"  # mean test loss; None for a model without data
FIDELITY = "fidelity"  # sentence encoders: mean cosine similarity to the unpruned embeddings
PERPLEXITY = "perplexity"  # language models: exp(mean next-token cross-entropy) on the validation split
LATENCY_THREADS = "latency_threads"  # threads the runtimes were pinned to
LATENCY_BATCHES = "latency_batches"  # batch sizes timed, in order
RUNTIME = "runtime"  # runtime versions, as text
NAMED = (PARAMS, NONZERO_PARAMS, SIZE_BYTES, FLOPS, SPARSE_FLOPS, ONNX_BYTES, ONNX_ERROR, ACCURACY, LOSS, FIDELITY,
         PERPLEXITY, LATENCY_THREADS, LATENCY_BATCHES, RUNTIME)  # every non-latency key a run writes per model


@dataclass(frozen=True)
class TaskMetric:
    """A task measure a run records: its metrics key, its label, its format, and which way is better."""

    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:.4f}"
    percent: bool = False  # a 0..1 share, shown as a percentage where space allows

    def show(self, value: float | None, percent: bool = False) -> str:
        """value formatted ("n/a" when missing); as a percentage if asked and the metric is a share."""
        if value is None:
            return "n/a"
        return f"{100 * value:.2f}%" if percent and self.percent else self.fmt.format(value)

    def worsening(self, base: float, value: float) -> float:
        """How much worse value is than base, in the metric's units: positive when worse, whichever way is
        better (an accuracy drop; a perplexity increase)."""
        return base - value if self.higher_is_better else value - base

    @property
    def change_name(self) -> str:
        """The sweep column holding worsening(): "accuracy_drop", "perplexity_increase"."""
        return f"{self.key}_{'drop' if self.higher_is_better else 'increase'}"

    @property
    def change_label(self) -> str:
        return f"{self.label} {'drop' if self.higher_is_better else 'increase'}"


TEST_ACCURACY = TaskMetric(ACCURACY, "test accuracy", True, percent=True)
NEXT_TOKEN_ACCURACY = TaskMetric(ACCURACY, "next-token accuracy", True, percent=True)  # an LM's accuracy
PERPLEXITY_METRIC = TaskMetric(PERPLEXITY, "validation perplexity", False, "{:.3f}")
FIDELITY_METRIC = TaskMetric(FIDELITY, "embedding fidelity", True)


def task_metrics(metrics: Mapping[str, Any]) -> list[TaskMetric]:
    """The task measures a model's metrics dict carries, its headline first: a language model's perplexity, then
    its accuracy (next-token); a sentence encoder's fidelity; a classifier's test accuracy. A model measured by
    none of them (random weights, no data) still gets accuracy, which reads "n/a"."""
    if metrics.get(PERPLEXITY) is not None:
        return [PERPLEXITY_METRIC, NEXT_TOKEN_ACCURACY]
    if metrics.get(FIDELITY) is not None:
        return [FIDELITY_METRIC, *([TEST_ACCURACY] if metrics.get(ACCURACY) is not None else [])]
    return [TEST_ACCURACY]


def headline(metrics: Mapping[str, Any]) -> TaskMetric:
    """The one task measure a model is judged by (see task_metrics)."""
    return task_metrics(metrics)[0]


def sweep_metric(columns: Iterable[str]) -> TaskMetric:
    """The task measure a sensitivity table (its columns) judges cuts by: a language model's perplexity, else
    accuracy. Its change_name column holds how much worse each cut made it (positive = worse, whichever way is
    better): what the budget solver minimises and the heatmap shows."""
    return PERPLEXITY_METRIC if PERPLEXITY_METRIC.change_name in set(columns) else TEST_ACCURACY

OLD_RUN_BATCHES = (1, 32)  # runs recorded before latency_batches existed were always timed at these
_PREFIX: dict[str, str] = {"onnxruntime": "", "torch": "torch_"}
_STAT: dict[str, str] = {"median": "latency_ms", "p90": "latency_p90_ms"}
_KEY = re.compile(r"(?P<runtime>torch_)?(?P<stat>latency_ms|latency_p90_ms)(?:_batch(?P<batch>[1-9][0-9]*))?")


@dataclass(frozen=True, order=True)
class LatencyKey:
    """Which latency figure: runtime (onnxruntime, or eager torch for comparison), statistic over the timed
    runs, and batch size. str() is its metrics key; batch 1 has no suffix ("latency_ms")."""

    runtime: Runtime = "onnxruntime"
    stat: Stat = "median"
    batch: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in get_args(Runtime) or self.stat not in get_args(Stat):
            raise ValueError(f"no latency key for runtime {self.runtime!r}, statistic {self.stat!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")

    def __str__(self) -> str:
        suffix = "" if self.batch == 1 else f"_batch{self.batch}"
        return f"{_PREFIX[self.runtime]}{_STAT[self.stat]}{suffix}"


LATENCY_DECIMALS = 5  # a latency in ms is recorded to 10 ns: one rounding for every recorded figure


def latency_key(batch: int = 1, stat: Stat = "median", runtime: Runtime = "onnxruntime") -> str:
    """The metrics key of one latency figure ("latency_ms", "torch_latency_p90_ms_batch32")."""
    return str(LatencyKey(runtime, stat, batch))


def parse_latency_key(key: str) -> LatencyKey | None:
    """The LatencyKey a metrics key spells, or None if it is not one (one spelling per key: "_batch1" is not)."""
    match = _KEY.fullmatch(key)
    if match is None or match["batch"] == "1":
        return None
    runtime: Runtime = "torch" if match["runtime"] else "onnxruntime"
    stat: Stat = "median" if match["stat"] == "latency_ms" else "p90"
    return LatencyKey(runtime, stat, int(match["batch"] or 1))


LATENCY_MS = latency_key()  # onnxruntime median at batch 1: the headline latency (a store column too)


def _number(value: Any) -> float | None:
    """A finite int or float as stored; anything else (damaged, missing, bool) is None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _batches(value: Any) -> tuple[int, ...]:
    ok = isinstance(value, list) and value and all(_count(b) is not None and b > 0 for b in value)
    return tuple(value) if ok else OLD_RUN_BATCHES


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ModelMetrics:
    """One model's recorded metrics, typed. A field is None when the run did not record it or recorded
    something unreadable; `source` is the dict it was read from, which to_dict returns unchanged."""

    params: int | None
    nonzero_params: int | None
    size_bytes: int | None
    flops: int | None
    sparse_flops: int | None
    onnx_bytes: int | None
    onnx_error: str | None
    accuracy: float | None
    loss: float | None
    fidelity: float | None
    perplexity: float | None
    latency: Mapping[LatencyKey, float]  # ms, every latency figure recorded
    latency_threads: int | None
    latency_batches: tuple[int, ...]
    runtime: str | None
    source: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetrics:
        """Read a metrics dict as runs of any age wrote it."""
        latency = {k: v for key, value in data.items()
                   if (k := parse_latency_key(key)) is not None and (v := _number(value)) is not None}
        return cls(
            params=_count(data.get(PARAMS)), nonzero_params=_count(data.get(NONZERO_PARAMS)),
            size_bytes=_count(data.get(SIZE_BYTES)), flops=_count(data.get(FLOPS)),
            sparse_flops=_count(data.get(SPARSE_FLOPS)), onnx_bytes=_count(data.get(ONNX_BYTES)),
            onnx_error=_text(data.get(ONNX_ERROR)), accuracy=_number(data.get(ACCURACY)),
            loss=_number(data.get(LOSS)), fidelity=_number(data.get(FIDELITY)),
            perplexity=_number(data.get(PERPLEXITY)), latency=latency,
            latency_threads=_count(data.get(LATENCY_THREADS)), latency_batches=_batches(data.get(LATENCY_BATCHES)),
            runtime=_text(data.get(RUNTIME)), source=copy.deepcopy(dict(data)))

    def to_dict(self) -> dict[str, Any]:
        """The dict as read (a copy): old keys, unknown keys and nulls kept."""
        return copy.deepcopy(dict(self.source))

    def latency_ms(self, batch: int = 1, stat: Stat = "median", runtime: Runtime = "onnxruntime") -> float | None:
        """One latency figure in ms, or None if it was not measured (e.g. no ONNX file, another batch)."""
        return self.latency.get(LatencyKey(runtime, stat, batch))


@dataclass(frozen=True)
class RunMetrics:
    """A run's metrics.json: the baseline's and the pruned model's metrics, typed; the rest (removed units,
    losses, trajectory, prediction, ...) is kept in `source` and written back unchanged."""

    baseline: ModelMetrics
    pruned: ModelMetrics
    source: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunMetrics:
        def part(name: str) -> ModelMetrics:
            value = data.get(name)
            return ModelMetrics.from_dict(value if isinstance(value, Mapping) else {})

        return cls(part("baseline"), part("pruned"), copy.deepcopy(dict(data)))

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.source))

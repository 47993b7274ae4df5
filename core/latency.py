"""Latency measured in onnxruntime on the CPU: warm-up, repeated timed runs, median and p90.

The thread count is pinned (default 1, the least noisy on a shared machine) and reported with the
figures, since latency without it means little. Models compared with each other are timed in
interleaved rounds, so a busy spell on the machine hits all of them alike. Eager torch is timed the
same way for comparison; a single artefact's figures are cached by its bytes (measure_cached).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import PruneLabError
from core.files import write_cache
from core.threads import torch_threads
from core.workspace import workspace


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    batch: int
    threads: int
    warmup: int
    repeats: int
    runtime: str = "onnxruntime-cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def session(onnx_bytes: bytes, threads: int = 1):
    """An onnxruntime CPU session with intra- and inter-op threads pinned."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def _timer(run: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1e3  # ms

    return timed


def _interleave(runners: dict, warmup: int, rounds: int, round_ms: float) -> dict[str, list[float]]:
    """Run every runner in alternating rounds (order reversed every other round), each for about round_ms
    milliseconds (at least 5 runs) per round; returns every timed run's ms per runner."""
    timers = {k: _timer(r) for k, r in runners.items()}
    per_round = {}
    for k, t in timers.items():
        warm = [t() for _ in range(warmup)]
        per_round[k] = max(5, min(2000, int(round_ms / max(np.median(warm), 1e-3))))
    times: dict[str, list[float]] = {k: [] for k in timers}
    order = list(timers)
    for r in range(rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            times[k].extend(timers[k]() for _ in range(per_round[k]))
    return times


def _stats(times: dict[str, list[float]], batch: int, threads: int, warmup: int, runtime: str) -> dict[str, Latency]:
    return {k: Latency(float(np.median(t)), float(np.percentile(t, 90)), batch, threads, warmup, len(t), runtime)
            for k, t in times.items()}


def _inputs(keys, input_shape: tuple[int, ...] | dict, batch: int, max_id: int | None = None) -> dict[str, np.ndarray]:
    """Random float32 inputs, or (max_id given: a model taking token ids) int64 ids in 1..max_id, ids its embedding
    table has (core.data.id_bound)."""
    rng = np.random.default_rng(0)
    shapes = input_shape if isinstance(input_shape, dict) else dict.fromkeys(keys, input_shape)
    if max_id is not None:
        return {k: rng.integers(1, max_id + 1, (batch, *shapes[k])).astype(np.int64) for k in keys}
    return {k: rng.standard_normal((batch, *shapes[k])).astype(np.float32) for k in keys}


def measure_interleaved(
    onnx_models: dict,
    input_shape: tuple[int, ...] | dict,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 10,
    round_ms: float = 30.0,
    max_id: int | None = None,
) -> dict[str, Latency]:
    """Time several ONNX models in alternating rounds, so that load from other processes on a shared
    machine hits all of them alike instead of whichever happened to run during a busy spell.

    Each round runs every model back to back (order reversed every other round) for about round_ms
    milliseconds each (at least 5 runs); medians and p90s are over all timed runs of a model.
    input_shape (without the batch dimension) is shared, or given per model as a dict; max_id: the largest token
    id of a model taking ids (core.data.id_bound), which such a model must be given.
    """
    sessions = {k: session(v, threads) for k, v in onnx_models.items()}
    if max_id is None and any("int" in s.get_inputs()[0].type for s in sessions.values()):
        raise PruneLabError("a model taking token ids is timed with ids its vocabulary has: give max_id")
    inputs = _inputs(sessions, input_shape, batch, max_id)
    runners = {k: partial(s.run, None, {s.get_inputs()[0].name: inputs[k]}) for k, s in sessions.items()}
    return _stats(_interleave(runners, warmup, rounds, round_ms), batch, threads, warmup, "onnxruntime-cpu")


def measure_torch(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 10,
    round_ms: float = 30.0,
    max_id: int | None = None,
) -> dict[str, Latency]:
    """The same interleaved timing in eager PyTorch (eval mode, no autograd, `threads` intra-op threads),
    for comparison with the runtime a model is deployed on. max_id: as for measure_interleaved."""
    inputs = {k: torch.from_numpy(v) for k, v in _inputs(models, input_shape, batch, max_id).items()}
    with torch_threads(threads), torch.inference_mode():
        runners = {k: partial(m.eval(), inputs[k]) for k, m in models.items()}
        times = _interleave(runners, warmup, rounds, round_ms)
    return _stats(times, batch, threads, warmup, f"torch-{torch.__version__}-cpu")


def _cache_file(onnx_bytes: bytes, input_shape: tuple[int, ...], batch: int, threads: int,
                max_id: int | None) -> Path:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    key = json.dumps([hashlib.sha256(onnx_bytes).hexdigest(), list(input_shape), batch, threads,
                      onnxruntime.__version__, cpu, "v1", *([max_id] if max_id is not None else [])])
    return workspace(create=False) / "cache" / "onnx-latency" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def measure_cached(onnx_bytes: bytes, input_shape: tuple[int, ...], batch: int = 1, threads: int = 1,
                   max_id: int | None = None) -> Latency:
    """Latency of one exported artefact, measured once per (file contents, input shape, batch, threads,
    runtime version, CPU) and then read from the workspace cache. For figures shown on their own (a
    baseline); models compared with each other are timed together with measure_interleaved instead."""
    path = _cache_file(onnx_bytes, input_shape, batch, threads, max_id)
    if path.exists():
        try:
            return Latency(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged cache entry is measured again
    lat = measure_interleaved({"m": onnx_bytes}, input_shape, batch=batch, threads=threads, max_id=max_id)["m"]
    write_cache(path, json.dumps(lat.to_dict()).encode())  # best-effort: the measurement is returned either way
    return lat


def _module_of(node, modules: set[str]) -> str | None:
    """The deepest model module an exported ONNX node came from (torch's exporter records its scopes)."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return next((s for s in reversed(scopes) if s in modules), None)
    return None


def profile_layers(onnx_bytes: bytes, input_shape: tuple[int, ...], modules: set[str], batch: int = 32,
                   runs: int = 20, max_id: int | None = None) -> dict[str, float]:
    """Mean onnxruntime kernel time (ms per run) of each model module, from the runtime's profiler.

    Graph optimisations are turned off so every ONNX node keeps its name and maps back to the module it
    was exported from; times are therefore those of an unfused graph — good for shares, not totals.
    """
    import json
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    graph = onnx.load_from_string(onnx_bytes).graph
    owner = {n.name: _module_of(n, modules) for n in graph.node}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "prunelab")
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        feed = {name: _inputs([name], input_shape, batch, max_id)[name]}  # token ids for a model taking ids
        for _ in range(3 + runs):  # 3 extra runs: each node's 3 slowest times (first-run allocation) are dropped
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    times: dict[str, list[float]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            module = owner.get(name[: -len("_kernel_time")])
            if module is not None:
                times.setdefault(module, []).append(e["dur"] / 1e3)  # µs -> ms
    return {m: sum(sorted(t)[: len(t) * runs // (runs + 3)]) / runs for m, t in times.items()}

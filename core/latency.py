"""Latency measured in onnxruntime on the CPU: warm-up, repeated timed runs, median and p90.

The thread count is pinned (default 1, the least noisy on a shared machine) and reported with the
figures, since latency without it means little. Models compared with each other are timed in
interleaved rounds, so a busy spell on the machine hits all of them alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


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


def _time_one(sess, feed: dict) -> float:
    t0 = time.perf_counter()
    sess.run(None, feed)
    return (time.perf_counter() - t0) * 1e3


def measure_interleaved(
    onnx_models: dict,
    input_shape: tuple[int, ...] | dict,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 10,
    round_ms: float = 30.0,
) -> dict[str, Latency]:
    """Time several ONNX models in alternating rounds, so that load from other processes on a shared
    machine hits all of them alike instead of whichever happened to run during a busy spell.

    Each round runs every model back to back (order reversed every other round) for about round_ms
    milliseconds each (at least 5 runs); medians and p90s are over all timed runs of a model.
    input_shape (without the batch dimension) is shared, or given per model as a dict.
    """
    rng = np.random.default_rng(0)
    shapes = input_shape if isinstance(input_shape, dict) else dict.fromkeys(onnx_models, input_shape)
    sessions = {k: session(v, threads) for k, v in onnx_models.items()}
    feeds = {k: {s.get_inputs()[0].name: rng.standard_normal((batch, *shapes[k])).astype(np.float32)}
             for k, s in sessions.items()}
    per_round = {}
    for k, s in sessions.items():
        warm = [_time_one(s, feeds[k]) for _ in range(warmup)]
        per_round[k] = max(5, min(2000, int(round_ms / max(np.median(warm), 1e-3))))
    times: dict[str, list[float]] = {k: [] for k in sessions}
    order = list(sessions)
    for r in range(rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            times[k].extend(_time_one(sessions[k], feeds[k]) for _ in range(per_round[k]))
    return {
        k: Latency(float(np.median(t)), float(np.percentile(t, 90)), batch, threads, warmup, len(t))
        for k, t in times.items()
    }


def _module_of(node, modules: set[str]) -> str | None:
    """The deepest model module an exported ONNX node came from (torch's exporter records its scopes)."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return next((s for s in reversed(scopes) if s in modules), None)
    return None


def profile_layers(onnx_bytes: bytes, input_shape: tuple[int, ...], modules: set[str], batch: int = 32,
                   runs: int = 20) -> dict[str, float]:
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
        feed = {sess.get_inputs()[0].name: np.zeros((batch, *input_shape), np.float32)}
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

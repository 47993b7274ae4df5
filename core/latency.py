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
    onnx_models: dict[str, bytes],
    input_shape: tuple[int, ...],
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
    """
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    sessions = {k: session(v, threads) for k, v in onnx_models.items()}
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
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

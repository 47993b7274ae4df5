"""Latency measured in onnxruntime on the CPU: warm-up, repeated timed runs, median and p90.

The thread count is pinned (default 1, the least noisy on a shared machine) and reported with the
figures, since latency without it means little.
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


def measure(
    onnx_bytes: bytes,
    input_shape: tuple[int, ...],
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    min_seconds: float = 0.0,
) -> Latency:
    """Time one forward pass of the ONNX model at `batch` (input_shape excludes the batch dimension).

    Runs `warmup` untimed passes, then at least `repeats` timed ones (more if they finish before
    `min_seconds`), and reports the median and 90th percentile in milliseconds.
    """
    sess = session(onnx_bytes, threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return Latency(
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        batch=batch,
        threads=threads,
        warmup=warmup,
        repeats=len(times),
    )

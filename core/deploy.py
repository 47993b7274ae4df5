"""Mask vs shrink vs deploy: what a pruned model costs in each form it can ship in, measured.

- dense ONNX: what onnxruntime runs. Unstructured pruning leaves its zeros inside dense tensors (same
  size, same speed); channel pruning has made every tensor smaller (smaller and faster).
- gzip of it: zeros compress, so downloads shrink; the file is inflated before use (no speed-up).
- sparse encoding ("PLSE"): per tensor a bitmask of the non-zeros plus their values, deflated. Storage
  only: onnxruntime's CPU kernels have no sparse path, so it is decoded to dense before running.
- int8 ONNX: onnxruntime static quantisation (QDQ, per-channel int8 weights, uint8 activations,
  calibrated on training images): ~4x smaller weights and faster where int8 kernels exist (VNNI here).
- sparse + int8: the sparse encoding with int8 values (one scale per tensor): smallest on disk;
  decoded to dense fp32 to run, so its accuracy is measured that way.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from core.config import PruneConfig
from core.data import id_bound
from core.errors import PruneLabError
from core.export import export_onnx
from core.files import write_atomic
from core.latency import measure_interleaved, session
from core.models import load, replay_reference
from core.prune import calibration
from core.run_folder import INT8_FILE

MAGIC = b"PLSE1"


def initializers(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(onnx_bytes).graph.initializer}


def with_initializers(onnx_bytes: bytes, tensors: dict[str, np.ndarray]) -> bytes:
    """The ONNX model with some initializers replaced (same names, shapes and dtypes)."""
    model = onnx.load_from_string(onnx_bytes)
    for t in model.graph.initializer:
        if t.name in tensors:
            t.CopyFrom(numpy_helper.from_array(tensors[t.name].astype(numpy_helper.to_array(t).dtype), t.name))
    return model.SerializeToString()


def encode_sparse(tensors: dict[str, np.ndarray], int8: bool = False) -> bytes:
    """PLSE: for each float tensor a packed bitmask of its non-zeros and their values (fp32, or int8
    with one symmetric scale per tensor); other tensors verbatim; everything deflated (level 9)."""
    meta, chunks = [], []
    for name, t in tensors.items():
        if np.issubdtype(t.dtype, np.floating):
            flat = t.astype(np.float32).ravel()
            mask = flat != 0
            values = flat[mask]
            scale = float(np.abs(values).max() / 127) if int8 and values.size else 0.0
            data = np.round(values / scale).astype(np.int8) if scale else values
            if int8 and not scale:
                data = values.astype(np.int8)
            payload = np.packbits(mask).tobytes() + data.tobytes()
            meta.append({"name": name, "shape": list(t.shape), "kind": "int8" if int8 else "f32",
                         "dtype": str(t.dtype), "nnz": int(mask.sum()), "scale": scale, "bytes": len(payload)})
        else:
            payload = np.ascontiguousarray(t).tobytes()
            meta.append({"name": name, "shape": list(t.shape), "kind": "raw", "dtype": str(t.dtype),
                         "bytes": len(payload)})
        chunks.append(payload)
    header = json.dumps(meta).encode()
    return MAGIC + zlib.compress(struct.pack("<I", len(header)) + header + b"".join(chunks), 9)


def decode_sparse(blob: bytes) -> dict[str, np.ndarray]:
    """Dense tensors back from PLSE (int8 values are multiplied by their scale)."""
    if not blob.startswith(MAGIC):
        raise PruneLabError("not a PruneLab sparse encoding (bad magic)")
    raw = zlib.decompress(blob[len(MAGIC):])
    (n,) = struct.unpack("<I", raw[:4])
    meta, pos, out = json.loads(raw[4:4 + n]), 4 + n, {}
    for m in meta:
        payload, pos = raw[pos:pos + m["bytes"]], pos + m["bytes"]
        size = int(np.prod(m["shape"], dtype=np.int64))
        if m["kind"] == "raw":
            out[m["name"]] = np.frombuffer(payload, dtype=m["dtype"]).reshape(m["shape"]).copy()
            continue
        mask_len = (size + 7) // 8
        mask = np.unpackbits(np.frombuffer(payload[:mask_len], np.uint8), count=size).astype(bool)
        values = np.frombuffer(payload[mask_len:], np.int8 if m["kind"] == "int8" else np.float32)
        dense = np.zeros(size, np.float32)
        dense[mask] = values.astype(np.float32) * (m["scale"] if m["kind"] == "int8" else 1.0)
        out[m["name"]] = dense.reshape(m["shape"]).astype(m["dtype"])
    return out


def _first_weighted(onnx_bytes: bytes) -> list[str]:
    """The name of the graph's first Conv, Gemm or MatMul node (ONNX lists nodes in topological order), if any."""
    graph = onnx.load_from_string(onnx_bytes).graph
    return next(([n.name] for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")), [])


def quantize_int8(onnx_bytes: bytes, calibration: np.ndarray, batch: int = 32) -> bytes:
    """onnxruntime static quantisation: QDQ, per-channel int8 weights, uint8 activations; the first layer with
    weights (Conv, Gemm or MatMul in graph order) stays float: it reads the raw input, where int8's rounding costs
    most for the least size (mnist-resnet, onnxruntime 1.32: 0.977 test accuracy with it quantised, 0.989 without,
    float 0.988; its weights are 144 of 175 k)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter({"input": calibration[i:i + batch]} for i in range(0, len(calibration), batch))

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model.int8.onnx")
        with open(src, "wb") as f:
            f.write(onnx_bytes)
        try:
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            nodes_to_exclude=_first_weighted(onnx_bytes))
        except Exception as e:  # report, keep the rest of the page working
            raise PruneLabError(f"int8 quantisation failed: {type(e).__name__}: {e}") from e
        with open(dst, "rb") as f:
            return f.read()


def onnx_accuracy(onnx_bytes: bytes, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    """Test accuracy of an ONNX model in onnxruntime."""
    sess = session(onnx_bytes, threads=1)
    name = sess.get_inputs()[0].name
    pred = np.concatenate([sess.run(None, {name: x[i:i + batch]})[0].argmax(-1) for i in range(0, len(x), batch)])
    return float((pred == y).mean())


@dataclass(frozen=True)
class Deployment:
    rows: list[dict]  # one per form: bytes, size vs the dense file, latency, speed-up, accuracy, how it runs
    int8_onnx: bytes
    batch: int


def variants(onnx_bytes: bytes, baseline_onnx: bytes, x_test: np.ndarray | None, y_test: np.ndarray | None,
             calibration: np.ndarray, input_shape: tuple[int, ...], batch: int = 1,
             max_id: int | None = None, int8: bytes = b"") -> Deployment:
    """Every deployable form of a pruned model beside the baseline's dense ONNX: bytes, onnxruntime
    latency (median, interleaved, at `batch`; None where it cannot run as such) and test accuracy (None
    for a model without data). max_id: the largest token id of a model taking ids (core.data.id_bound); int8: the
    int8 model the run already made (its config quantised), measured as it is instead of quantised again."""
    int8 = int8 or quantize_int8(onnx_bytes, calibration)
    tensors = initializers(onnx_bytes)
    sparse, sparse8 = encode_sparse(tensors), encode_sparse(tensors, int8=True)
    timed = measure_interleaved({"base": baseline_onnx, "dense": onnx_bytes, "int8": int8}, input_shape, batch=batch,
                                max_id=max_id)

    def accuracy(model: bytes) -> float | None:
        return None if x_test is None else onnx_accuracy(model, x_test, y_test)

    dense_acc = accuracy(onnx_bytes)
    sparse8_acc = accuracy(with_initializers(onnx_bytes, decode_sparse(sparse8)))

    def row(form: str, size: int, latency: str | None, accuracy: float | None, runs: str) -> dict:
        ms = timed[latency].median_ms if latency else None
        return {"form": form, "bytes": size, "size_vs_dense": size / len(onnx_bytes), "latency_ms": ms,
                "speedup_vs_baseline": timed["base"].median_ms / ms if ms else None, "accuracy": accuracy,
                "runs_as": runs}

    return Deployment([
        row("baseline dense ONNX", len(baseline_onnx), "base", accuracy(baseline_onnx), "as is"),
        row("pruned dense ONNX", len(onnx_bytes), "dense", dense_acc, "as is: zeros are computed like any weight"),
        row("gzip of it", len(gzip.compress(onnx_bytes, 9)), None, dense_acc, "after decompression: no speed-up"),
        row("sparse encoding (bitmask + fp32)", len(sparse), None, dense_acc,
            "after decoding to dense: no sparse kernels in onnxruntime CPU"),
        row("int8 ONNX (static, per-channel)", len(int8), "int8", accuracy(int8), "as is: int8 kernels"),
        row("sparse + int8 encoding", len(sparse8), None, sparse8_acc, "after decoding to dense fp32"),
    ], int8, batch)


def deploy_folder(folder, batch: int = 1, spec=None) -> Deployment:
    """Measure every form of a run folder's model (see `variants`) and write model.int8.onnx and
    deploy.json next to it (each atomically)."""
    folder = Path(folder)
    if not (folder / "model.onnx").is_file():
        raise PruneLabError(f"{folder} has no model.onnx (a folder written by prunelab prune/apply)")
    config = PruneConfig.load(folder / "config.json")
    # a model loaded with options (weights, data) is passed in; a file the folder names never runs unasked
    spec = spec or load(replay_reference(config.model, str(folder)))
    base_onnx, _ = export_onnx(spec.model, spec.example_input)
    test = (spec.split.test_x.numpy(), spec.split.test_y.numpy()) if spec.has_data else (None, None)
    ran_int8 = folder / INT8_FILE if config.quantize == "int8" and (folder / INT8_FILE).is_file() else None
    report = variants((folder / "model.onnx").read_bytes(), base_onnx, *test,
                      calibration(spec, 256, config.seed).x.numpy(), tuple(spec.example_input.shape[1:]), batch,
                      id_bound(spec.example_input), ran_int8.read_bytes() if ran_int8 else b"")
    if ran_int8 is None:  # the run's own int8 file is what its metrics.json measured: never replaced
        write_atomic(folder / INT8_FILE, report.int8_onnx)
    write_atomic(folder / "deploy.json", (json.dumps({"batch": batch, "rows": report.rows}, indent=2) + "\n").encode())
    return report

"""Export: a single-file ONNX model with a dynamic batch dimension, checked against torch in onnxruntime.

Pruning masks are folded into the weights first (on a copy), so the file holds a plain dense model.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.data import random_inputs
from core.errors import PruneLabError
from core.files import write_atomic
from core.latency import session
from core.prune.unstructured import make_permanent, refresh_masked

INPUT_NAME, OUTPUT_NAME = "input", "logits"
CHECK_BATCHES = (1, 7)  # batch sizes the export is verified at: one, and an odd one nobody traced
EXPORT_BATCH = 2  # rows of the traced example: batch 1 lets torch specialise the batch (see traced_batch)
TOLERANCE = 1e-4  # max |onnxruntime - torch| on the outputs, relative to their largest magnitude when above 1
MAX_BATCH = 4096  # the largest batch an exported model (ONNX, .pt2) accepts


def deployable(model: nn.Module) -> nn.Module:
    """A copy of model with pruning masks folded into the weights, in eval mode."""
    refresh_masked(model)
    return make_permanent(copy.deepcopy(model)).eval()


def traced_batch(example_input: torch.Tensor) -> torch.Tensor:
    """The example repeated to EXPORT_BATCH rows: the same values, so token ids stay ones the model has.

    Why: traced at batch 1, torch specialises the batch dimension of some models (attention in
    nn.TransformerEncoder, a channels-first LayerNorm followed by a conv as in ConvNeXt), and the export
    fails or is fixed at one row; a batch of two keeps it symbolic."""
    first = example_input[:1]
    return first.repeat(EXPORT_BATCH, *([1] * (first.dim() - 1)))


def dynamic_batch(model: nn.Module) -> dict[str, dict[int, torch.export.Dim]]:
    """dynamic_shapes for torch.export (and the ONNX exporter built on it): dimension 0 of the model's first
    forward argument is the batch, 1..MAX_BATCH rows."""
    arg = next(iter(inspect.signature(model.forward).parameters))
    return {arg: {0: torch.export.Dim("batch", max=MAX_BATCH)}}


def _export_bytes(model: nn.Module, example_input: torch.Tensor) -> bytes:
    """ONNX bytes from torch's dynamo exporter, weights embedded, batch dimension dynamic."""
    buf = io.BytesIO()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # the exporter narrates its progress on stdout; CLI users asked for JSON there
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (traced_batch(example_input),), dynamo=True, external_data=False,
                dynamic_shapes=dynamic_batch(model),
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            )
        program.save(buf)
    except Exception as e:  # report, do not crash: torch metrics stay available to the caller
        raise PruneLabError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
    finally:
        quiet.setLevel(level)
    return buf.getvalue()


@contextlib.contextmanager
def _onnxruntime_errors() -> Iterator[None]:
    """Turn any exception onnxruntime raises (InvalidArgument, Fail, InvalidProtobuf, ...) into one line."""
    try:
        yield
    except Exception as e:
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise PruneLabError(f"ONNX check failed in onnxruntime: {first}") from e


def check_onnx(onnx_bytes: bytes, model: nn.Module, example_input: torch.Tensor) -> float:
    """Largest |onnxruntime - torch| over random inputs at CHECK_BATCHES, divided by the largest |output|
    when that exceeds 1 (float32 rounding grows with magnitude: logits of ~100 differ by ~1e-5); raises
    above TOLERANCE. An onnxruntime failure (session creation or run) is one PruneLabError line, so callers
    keep their torch figures."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    with _onnxruntime_errors():
        sess = session(onnx_bytes, threads=1)
        for batch in CHECK_BATCHES:
            x = random_inputs(example_input, batch, gen)
            with torch.no_grad():
                expected = model(x).numpy()
            got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
            scale = max(1.0, float(np.abs(expected).max()))
            worst = max(worst, float(np.abs(got - expected).max()) / scale)
    if worst > TOLERANCE:
        raise PruneLabError(f"ONNX export differs from torch by {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return worst


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: Path | None = None) -> tuple[bytes, float]:
    """Export model (masks folded in) to ONNX, verify it in onnxruntime, optionally write it to path.

    Returns the file's bytes and the largest deviation from torch that the check saw.
    """
    model = deployable(model)
    data = _export_bytes(model, example_input)
    error = check_onnx(data, model, example_input)
    if path is not None:
        write_atomic(Path(path), data)
    return data, error

"""Export: a single-file ONNX model with a dynamic batch dimension, checked against torch in onnxruntime.

Pruning masks are folded into the weights first (on a copy), so the file holds a plain dense model.

Exports are memoised in-process (export_onnx): the dynamo exporter takes seconds to tens of seconds per model
(MiniLM: 17 s to export and check, 0.2-0.3 s to key), and a process measuring several runs exports the same
unpruned model again for every baseline and comparison (the dashboard's server, searches, the tests). The cache
holds each file's bytes and the check's deviation, keyed by the content of the deployable model (masks folded),
so a pruned model and its permanent copy share an entry:
- for every submodule in named_modules() order: its name, its class (the class object itself, so another
  class of the same name never matches), extra_repr(), and its own attributes (vars) other than the ones
  every nn.Module has, by value (numbers, strings, containers, tensors, configs) or by identity (classes,
  functions, with a closure's contents), since forward may read any of them (num_heads, an activation);
- every parameter and buffer: name, dtype, shape and bytes (a tensor seen before under another name is keyed
  as that alias: tied weights make a different file);
- what the exporter and the check read of the example: its dtype and trailing shape, and for token ids the
  first row (traced_batch repeats it) and the largest id (random_inputs draws up to it); float values and
  the number of rows change nothing;
- torch's version and this module's export constants.
A model the key cannot fingerprint (forward hooks, a plain attribute holding a module or an object without
__dict__) is exported without the cache. Not keyed: the code of forward beyond its class (a class edited in
place) and globals forward reads. Failed exports are not cached; entries are dropped least recently used
first beyond CACHE_BYTES in total; the file is still written to `path` on every call.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import hashlib
import inspect
import io
import logging
import threading
import types
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.data import id_bound, random_inputs
from core.errors import PruneLabError
from core.files import write_atomic
from core.latency import session
from core.prune.unstructured import make_permanent, refresh_masked

INPUT_NAME, OUTPUT_NAME = "input", "logits"
CHECK_BATCHES = (1, 7)  # batch sizes the export is verified at: one, and an odd one nobody traced
EXPORT_BATCH = 2  # rows of the traced example: batch 1 lets torch specialise the batch (see traced_batch)
TOLERANCE = 1e-4  # max |onnxruntime - torch| on the outputs, relative to their largest magnitude when above 1
MAX_BATCH = 4096  # the largest batch an exported model (ONNX, .pt2) accepts
CACHE_BYTES = 512 * 2**20  # memoised ONNX files, in total (MiniLM's is ~90 MB): bounds the dashboard's server
KEY_DEPTH = 8  # nesting levels of a plain attribute the key follows (a config's dicts); deeper or cyclic: no cache

_MEMO: OrderedDict[tuple, tuple[bytes, float]] = OrderedDict()  # key -> (bytes, deviation), least recent first
_MEMO_LOCK = threading.Lock()  # the dashboard's sessions export from several threads
_MODULE_INTERNALS = frozenset(vars(nn.Module()))  # parameters, buffers, submodules, hooks, training
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
          torch.memory_format)
_BY_IDENTITY = (type, types.ModuleType, enum.Enum)
# hooks that can change what forward returns, or the weights the exporter reads (via state_dict): no key
_KEYLESS_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks")


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


class _Unkeyable(Exception):
    """The model holds something the key cannot fingerprint by content: it is exported without the cache."""


class _Key:
    """A content digest of everything fed to it, plus the objects compared by identity (classes, functions),
    which the key keeps alive so that a freed object's id is never taken by another."""

    def __init__(self) -> None:
        self.digest = hashlib.blake2b(digest_size=32)
        self.objects: list[Any] = []
        self.tensors: dict[int, str] = {}  # id -> first name, for tensors shared by two names

    def text(self, *parts: object) -> None:
        """Feed parts, each length-prefixed so that no two sequences of parts feed the same bytes."""
        for part in parts:
            data = part if isinstance(part, bytes) else str(part).encode()
            self.digest.update(len(data).to_bytes(8, "little"))
            self.digest.update(data)

    def same_object(self, obj: Any) -> None:
        self.text("object", len(self.objects))
        self.objects.append(obj)

    def tensor(self, name: str, t: torch.Tensor) -> None:
        """dtype, shape and bytes of t, or the name it was first seen under (tied weights)."""
        if id(t) in self.tensors:
            self.text("alias", name, self.tensors[id(t)])
            return
        self.tensors[id(t)] = name
        self.data(name, t)

    def data(self, name: str, t: torch.Tensor) -> None:
        """dtype, shape and bytes of t (a dense CPU-readable tensor; any other kind: no key)."""
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            raise _Unkeyable(f"{name}: a {t.layout} tensor on {t.device}")
        self.text("tensor", name, t.dtype, tuple(t.shape))
        # a byte view of the contiguous data (no copy when already contiguous; any dtype, bfloat16 included)
        self.digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())

    def value(self, name: str, v: Any, depth: int = 0) -> None:
        """A plain attribute: by value where it has one, by identity for classes and functions."""
        if depth > KEY_DEPTH:
            raise _Unkeyable(f"{name}: nested deeper than {KEY_DEPTH} (or cyclic)")
        if isinstance(v, _PLAIN):
            self.text(type(v).__qualname__, repr(v))
        elif isinstance(v, torch.Tensor):
            self.tensor(name, v)
        elif isinstance(v, (tuple, list, dict)):
            self._container(name, v, depth)
        elif isinstance(v, _BY_IDENTITY):
            self.same_object(v)
        elif callable(v) and not isinstance(v, nn.Module):
            self._function(name, v, depth)
        else:
            self._object(name, v, depth)

    def _container(self, name: str, v: tuple | list | dict, depth: int) -> None:
        self.same_object(type(v))
        self.text(len(v))
        for k, item in v.items() if isinstance(v, dict) else enumerate(v):
            if isinstance(v, dict):
                self.value(name, k, depth + 1)
            self.value(name, item, depth + 1)

    def _function(self, name: str, f: Any, depth: int) -> None:
        """A function by identity, with what it holds (closure, defaults, partial arguments); a builtin bound
        to an object, or any other callable object, by its state."""
        if isinstance(f, types.FunctionType):
            self.same_object(f)
            cells = [c.cell_contents for c in f.__closure__ or ()]
            self.value(name, (cells, f.__defaults__, f.__kwdefaults__), depth + 1)
        elif isinstance(f, types.BuiltinFunctionType) and isinstance(f.__self__, (type(None), *_BY_IDENTITY)):
            self.same_object(f)  # torch.relu, math.exp: no state of their own
        elif isinstance(f, functools.partial):
            self.same_object(functools.partial)
            self.value(name, (f.func, f.args, f.keywords), depth + 1)
        elif isinstance(f, types.MethodType):
            self.value(name, (f.__func__, f.__self__), depth + 1)
        else:
            self._object(name, f, depth)

    def _object(self, name: str, v: Any, depth: int) -> None:
        """Another object (a model config): its class and its own attributes, if all its state is in them."""
        if isinstance(v, nn.Module) or not hasattr(v, "__dict__") or hasattr(type(v), "__slots__"):
            raise _Unkeyable(f"{name}: a {type(v).__qualname__} attribute")
        self.same_object(type(v))
        self.value(name, vars(v), depth + 1)

    def module(self, name: str, m: nn.Module) -> None:
        """What forward can read of m itself (its submodules are keyed in turn)."""
        self.text("module", name, m.extra_repr())
        self.same_object(type(m))
        for attr, v in vars(m).items():
            if attr not in _MODULE_INTERNALS:
                self.text(attr)
                self.value(f"{name}.{attr}", v)
            elif attr in _KEYLESS_HOOKS and v:
                raise _Unkeyable(f"{name}: {attr}")
        for kind, tensors in (("parameter", m._parameters), ("buffer", m._buffers)):
            for tname, t in tensors.items():
                self.text(kind, tname)
                if t is not None:
                    self.tensor(f"{name}.{tname}", t)

    def example(self, x: torch.Tensor) -> None:
        """What the exporter (the first row, repeated) and the check (trailing shape, dtype, largest id) read."""
        self.text("example", x.dtype, x.device, tuple(x.shape[1:]))
        if not x.is_floating_point():
            self.data("example", x[:1])
            self.text("largest id", id_bound(x))


def _key(model: nn.Module, example_input: torch.Tensor) -> tuple | None:
    """The cache key of exporting model (already deployable) on example_input, or None if it has none."""
    key = _Key()
    key.text(torch.__version__, EXPORT_BATCH, MAX_BATCH, CHECK_BATCHES, TOLERANCE, INPUT_NAME, OUTPUT_NAME)
    try:
        if _global_forward_hooks():
            raise _Unkeyable("global forward hooks")
        key.example(example_input)
        for name, module in model.named_modules():
            key.module(name, module)
    except Exception as e:  # _Unkeyable, or a tensor that will not give its bytes: export without the cache
        logging.getLogger(__name__).debug("ONNX export not cached: %s", e)
        return None
    return key.digest.digest(), tuple(key.objects)


def _global_forward_hooks() -> bool:
    """Whether hooks registered for every module (nn.modules.module.register_module_forward_hook) exist."""
    internals = nn.modules.module
    return any(getattr(internals, n, None) for n in ("_global_forward_hooks", "_global_forward_pre_hooks"))


def _recall(key: tuple | None) -> tuple[bytes, float] | None:
    """The (bytes, deviation) remembered under key, now the most recently used; None if there are none."""
    if key is None:
        return None
    with _MEMO_LOCK:
        found = _MEMO.get(key)
        if found is not None:
            _MEMO.move_to_end(key)
        return found


def _remember(key: tuple | None, data: bytes, error: float) -> None:
    """Keep (data, error) under key, dropping the least recently used entries beyond CACHE_BYTES."""
    if key is None or len(data) > CACHE_BYTES:
        return
    with _MEMO_LOCK:
        _MEMO[key] = (data, error)
        _MEMO.move_to_end(key)
        while sum(len(d) for d, _ in _MEMO.values()) > CACHE_BYTES:
            _MEMO.popitem(last=False)


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: Path | None = None) -> tuple[bytes, float]:
    """Export model (masks folded in) to ONNX, verify it in onnxruntime, optionally write it to path.

    Returns the file's bytes and the largest deviation from torch that the check saw; both are remembered for
    an identical model (see the module's docstring), so exporting it again costs a hash, not an export.
    """
    model = deployable(model)
    key = _key(model, example_input)
    found = _recall(key)
    if found is None:
        data = _export_bytes(model, example_input)
        error = check_onnx(data, model, example_input)  # raises: nothing remembered
        _remember(key, data, error)
    else:
        data, error = found
    if path is not None:
        write_atomic(Path(path), data)
    return data, error

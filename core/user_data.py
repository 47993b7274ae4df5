"""A user's data: (inputs, labels) loaders materialised on the CPU, and .npz files read without pickles."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import preflight
from core.data import Split
from core.errors import PruneLabError
from core.user_code import one_line, some

NPZ_KEYS = ("x", "y", "x_train", "y_train")  # the arrays of an .npz data file (the only ones read)


def materialise(loader: Iterable, max_samples: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) concatenated from the loader's (inputs, labels) batches on the CPU, at most
    max_samples of them (iteration stops once that many were seen); labels as int64."""
    if loader is None or isinstance(loader, (str, bytes, torch.Tensor)) or not isinstance(loader, Iterable):
        raise PruneLabError(f"{where} must be an iterable of (inputs, labels) batches, got {type(loader).__name__}")
    xs, ys, seen = [], [], 0
    try:
        for i, batch in enumerate(loader):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise PruneLabError(f"{where} must yield (inputs, labels) pairs; batch {i} is "
                                    f"{type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (
                                        tuple, list)) else ""))
            x, y = (_as_tensor(v, f"{where}: batch {i} {part}") for v, part in zip(batch, ("inputs", "labels"),
                                                                                   strict=True))
            if x.dim() == 0 or y.dim() != 1 or len(x) != len(y):
                raise PruneLabError(f"{where}: batch {i} has inputs {tuple(x.shape)} and labels {tuple(y.shape)}; "
                                    "expected a batch of inputs and one integer label per input")
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise PruneLabError(f"{where}: labels must be integer class indices, got {y.dtype}")
            xs.append(x.detach().cpu())
            ys.append(y.detach().cpu().long())
            seen += len(x)
            if seen >= max_samples:
                break
    except PruneLabError:
        raise
    except Exception as e:
        raise PruneLabError(f"{where} raised {one_line(e)}") from None
    if not xs:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    try:
        x = torch.cat(xs)[:max_samples]
    except RuntimeError:
        raise PruneLabError(f"{where}: batches have different input shapes "
                            f"({', '.join(sorted({str(tuple(t.shape[1:])) for t in xs})[:3])})") from None
    return x.contiguous(), torch.cat(ys)[:max_samples].contiguous()


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise PruneLabError(f"{where} must be a tensor, got {type(value).__name__}")


def load_npz(data: str | Path, max_samples: int = 5000) -> Split:
    """A Split from an .npz file: x and y (evaluation), optionally x_train and y_train; read without pickles.
    Float inputs become float32, integer inputs (token ids) int64, labels int64; at most max_samples each."""
    path = Path(data)
    if not path.is_file():
        raise PruneLabError(f"data file {path} not found")
    if path.suffix != ".npz":
        raise PruneLabError(f"data file {path}: expected an .npz with arrays x and y (optionally x_train, y_train)")
    preflight.npz_arrays(path, NPZ_KEYS)  # declared sizes first: numpy allocates each array whole
    try:
        with np.load(path, allow_pickle=False) as f:
            held = sorted(f.files)
            arrays = {k: f[k] for k in NPZ_KEYS if k in held}
    except Exception as e:
        raise PruneLabError(f"cannot read {path} (corrupt, or holding pickled objects?): {one_line(e)}") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing or ("x_train" in arrays) != ("y_train" in arrays):
        raise PruneLabError(f"data file {path} must hold arrays x and y, and optionally both x_train and y_train; "
                            f"it holds {some(held, 8) or 'nothing'}")

    def pair(xk: str, yk: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = arrays[xk][:max_samples], arrays[yk][:max_samples]
        if x.ndim == 0 or y.ndim != 1 or len(x) != len(y) or x.dtype.kind not in "fiub" or y.dtype.kind not in "iu":
            raise PruneLabError(f"data file {path}: {xk} {x.shape} {x.dtype} and {yk} {y.shape} {y.dtype} must be "
                                "numeric inputs and one integer label per input")
        x = x.astype(np.float32 if x.dtype.kind == "f" else np.int64)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))

    test_x, test_y = pair("x", "y")
    if len(test_x) == 0:
        raise PruneLabError(f"data file {path}: x is empty")
    train_x, train_y = pair("x_train", "y_train") if "x_train" in arrays else (test_x[:0], test_y[:0])
    return Split(train_x, train_y, test_x, test_y)

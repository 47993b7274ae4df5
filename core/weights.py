"""Weights files: a state dict read from .pt/.pth (weights-only unless the user trusts pickles) or
.safetensors, its declared sizes checked first (core.preflight), and loaded strictly into a model."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import preflight
from core.errors import PruneLabError
from core.user_code import on_sys_path, one_line, some

PICKLE_SUFFIXES = (".pt", ".pth")


def torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load on the CPU: weights-only unless trust_pickle; corrupt files and pickles that need code to
    load (without trust_pickle) are PruneLabErrors. Nothing in an untrusted file is executed; nothing is read
    before its declared size is checked (core.preflight)."""
    preflight.weights_file(path)
    try:
        if trust_pickle:
            with on_sys_path(path.resolve().parent):  # classes a pickled model names often live beside it
                return torch.load(path, map_location="cpu", weights_only=False)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle and "Unsupported global" in str(e):  # a real pickle naming Python objects (classes)
            raise PruneLabError(f"{path} holds pickled objects, not just tensors: loading it runs code from the "
                                "file; pass --trust-pickle (trust_pickle=True) only if you trust its source") from None
        raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {one_line(e)}") from None
    except Exception as e:
        raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {one_line(e)}") from None


def read_state_dict(weights: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: .safetensors, or .pt/.pth holding a state dict (or a dict with one
    under "state_dict" or "model"; a pickled nn.Module's state dict with trust_pickle)."""
    path = Path(weights)
    if not path.is_file():
        raise PruneLabError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PruneLabError("reading .safetensors needs the safetensors package: .venv/bin/pip install "
                                "safetensors") from None
        preflight.weights_file(path)
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {one_line(e)}") from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise PruneLabError(f"weights file {path}: expected .pt, .pth or .safetensors")
    obj = torch_load(path, trust_pickle)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), nn.Module):
                obj = obj[key].state_dict()
                break
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PruneLabError(f"{path} holds {type(obj).__name__}, not a state dict (names to tensors, or a dict with "
                            "one under 'state_dict' or 'model')")
    return obj


def load_weights(model: nn.Module, weights: str | Path, trust_pickle: bool = False) -> None:
    """Load a weights file into model strictly; names and shapes that do not match are listed (up to 5)."""
    state = read_state_dict(weights, trust_pickle)
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        parts = ([f"missing {some(missing)}"] if missing else []) + (
            [f"unexpected {some(unexpected)}"] if unexpected else [])
        raise PruneLabError(f"weights {weights} do not fit the model: {'; '.join(parts)}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(own)
              if state[k].shape != own[k].shape]
    if shapes:
        raise PruneLabError(f"weights {weights} do not fit the model (file vs model shape): {some(shapes)}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise PruneLabError(f"cannot load weights {weights}: {one_line(e)}") from None

"""`path/to/model.pt`: a whole pickled nn.Module (unpickling runs code: only with trust_pickle), with its
data from an .npz file."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from core.errors import PruneLabError
from core.loaders.user_spec import finish, summary_line
from core.spec import ModelSpec
from core.user_data import load_reference
from core.weights import load_weights, torch_load


def from_pickle(ref: str, path: Path, weights: str | None, trust_pickle: bool, data: str | None,
                 max_samples: int) -> ModelSpec:
    obj = torch_load(path, trust_pickle)  # weights-only first: a state dict gets the message below
    if not isinstance(obj, nn.Module):
        raise PruneLabError(f"{path} holds a {type(obj).__name__}, not a pickled nn.Module; weights alone need "
                            "their architecture: give a registry name or file.py:build with --weights")
    if data is None:
        raise PruneLabError(f"a pickled model ({path}) needs data: --data (an .npz of x and y, a .csv/.jsonl, a "
                            "datasets folder or an image folder)")
    split = load_reference(data, max_samples=max_samples)
    if weights is not None:
        load_weights(obj, weights, trust_pickle)
    return finish(ref, str(path), obj, split.test_x, split, summary_line(f"pickled model {path}", obj, split, None))

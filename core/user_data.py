"""A user's data: (inputs, labels) loaders materialised on the CPU, and data files as users keep them.

`load_data` is the one entry point for a data path (the CLI's --data, the dashboard's data field), whatever
it names:

- an `.npz` with arrays x and y, optionally x_train and y_train (read without pickles);
- a `.csv` or `.jsonl` file with a text column (`text` or `sentence` unless chosen) and a label column
  (`label` unless chosen), tokenised with the model's own tokenizer from its Hugging Face folder;
- a Hugging Face `datasets` folder (`save_to_disk` of a Dataset or a DatasetDict) with a text or image column;
- an image folder: one sub-folder of PNG/JPEG images per class (or train/ and test/ folders of those),
  resized and normalised as the model's folder says.

A DatasetDict's (or an image folder's) own train and test splits are kept; a single table or folder is split
with the project's seeded order (core.data.seeded_order, SPLIT_SEED): TEST_FRACTION of the rows evaluate,
the rest train. Each part keeps at most max_samples rows (a seeded choice when it has more). Labels are
integers, or class names (mapped through the model's own names, else in sorted order: DataSplit.label_names).
Readers live in core.loaders.data_*; every mismatch is one PruneLabError line naming the file.

Column choices travel with the path as one string, `PATH?text=COLUMN&label=COLUMN` (data_reference), so every
layer that carries a data path — configs' replay commands, the dashboard's jobs and check-loads — carries them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np
import torch

from core import preflight
from core.data import SPLIT_SEED, Split, seeded_order
from core.errors import PruneLabError
from core.loaders.data_datasets import dataset_parts, is_datasets_folder
from core.loaders.data_facts import ModelFacts, Part, class_ids, model_facts
from core.loaders.data_images import Images, folder_parts, stack
from core.loaders.data_text import file_part, tokenise
from core.user_code import one_line, some

NPZ_KEYS = ("x", "y", "x_train", "y_train")  # the arrays of an .npz data file (the only ones read)
TEST_FRACTION = 0.2  # of a single table or folder, as the shipped data sets (digits 360/1,797, MNIST 1,000/5,000)
TEXT_SUFFIXES = (".csv", ".jsonl")
OPTIONS = {"text": "text_column", "label": "label_column"}  # a data reference's options: load_data's keywords


@dataclass(frozen=True)
class DataSplit(Split):
    """A Split read from a user's file, with the class names in id order when its labels were names."""

    label_names: tuple[str, ...] = ()


def label_note(split: Split | None) -> str | None:
    """'labels neg=0, pos=1' for data whose labels were class names (what each name became), else None."""
    names = getattr(split, "label_names", ())
    return f"labels {', '.join(f'{n}={i}' for i, n in enumerate(names))}" if names else None


def data_reference(path: str | None, text_column: str | None = None, label_column: str | None = None) -> str | None:
    """The one string that names data and its column choices: path, or path?text=…&label=… (None: no data)."""
    chosen = {k: v for k, v in (("text", text_column), ("label", label_column)) if v}
    if path is None:
        if chosen:
            raise PruneLabError("a text or label column was chosen, but no data to read it from")
        return None
    return f"{path}?{urlencode(chosen)}" if chosen else path


def split_reference(ref: str) -> tuple[str, dict[str, str]]:
    """(path, {option: value}) of a data reference. A path that exists is taken whole (a '?' in a file name is
    kept); otherwise what follows its last '?' are options, each one of OPTIONS."""
    path, sep, query = ref.rpartition("?")
    if not sep or Path(ref).exists():
        return ref, {}
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise PruneLabError(f"unknown option {unknown[0]!r} in the data reference {ref} (known: {', '.join(OPTIONS)})")
    return path, options


def load_reference(ref: str, *, model_folder: Path | None = None, image_shape: tuple[int, ...] | None = None,
                   max_samples: int) -> Split:
    """load_data of a data reference (a path, with its column choices when it carries any)."""
    path, options = split_reference(ref)
    return load_data(path, model_folder=model_folder, image_shape=image_shape, max_samples=max_samples,
                     **{OPTIONS[k]: v or None for k, v in options.items()})


def load_data(path: str | Path, *, model_folder: Path | None = None, text_column: str | None = None,
              label_column: str | None = None, image_shape: tuple[int, ...] | None = None,
              max_samples: int) -> Split:
    """The Split of whatever `path` names (see the module docstring); model_folder is the model's Hugging Face
    folder (its tokenizer, classes, image size and normalisation); image_shape, for a model without one, the
    (channels, height, width) of its example input, which images are converted and resized to."""
    path = Path(path)
    if not path.exists():
        raise PruneLabError(f"data file {path} not found")
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path, max_samples)
    facts = model_facts(model_folder, image_shape)
    limit = math.ceil(max_samples / TEST_FRACTION)  # rows read from a text file: enough to fill both parts
    if path.is_file() and path.suffix in TEXT_SUFFIXES:
        parts = {"all": file_part(path, text_column, label_column, limit)}
    elif path.is_dir() and is_datasets_folder(path):
        parts = dataset_parts(path, text_column, label_column)
    elif path.is_dir():
        parts = folder_parts(path)
    else:
        raise PruneLabError(f"{path}: expected an .npz, a .csv or .jsonl file, a Hugging Face datasets folder or an "
                            "image folder (one sub-folder of images per class)")
    return _assemble(parts, facts, max_samples, str(path))


def _assemble(parts: dict[str, Part], facts: ModelFacts, max_samples: int, where: str) -> DataSplit:
    """The rows picked from each part, labels as class indices and inputs encoded, as a DataSplit."""
    picks = {name: (parts.get("all") or parts[name], rows) for name, rows in _picks(parts, max_samples).items()}
    read = {name: part.rows(rows) for name, (part, rows) in picks.items()}  # (inputs, raw labels) per name
    if not len(read["test"][0]):
        raise PruneLabError(f"{where} has no rows to evaluate on")
    every = [label for _, labels in read.values() for label in labels]  # decides names vs indices for all parts
    ys, names = {}, ()
    for name, (part, rows) in picks.items():
        ys[name], names = class_ids(read[name][1], facts, part.where, part.unit, [r + 1 for r in rows], every)
    inputs = read["test"][0] + read["train"][0] if "train" in read else read["test"][0]
    x = stack(inputs, facts.image, where) if isinstance(inputs, Images) else tokenise(inputs, facts, where)
    n = len(read["test"][0])  # encoded together, split after: one padded length, one image size
    return DataSplit(x[n:], ys.get("train", torch.empty(0, dtype=torch.long)), x[:n], ys["test"], names)


def _picks(parts: dict[str, Part], max_samples: int) -> dict[str, list[int]]:
    """The rows of each part to read, "test" and "train": a single part split in the seeded order
    (TEST_FRACTION evaluate), a part with more than max_samples rows a seeded choice of them (in order)."""
    if "all" in parts:
        n = parts["all"].size
        order = seeded_order(n, SPLIT_SEED).tolist()
        cut = max(1, round(n * TEST_FRACTION))
        return {"test": order[:cut][:max_samples], "train": order[cut:][:max_samples]}
    return {name: _at_most(parts[name].size, max_samples) for name in ("test", "train") if name in parts}


def _at_most(n: int, max_samples: int) -> list[int]:
    return list(range(n)) if n <= max_samples else sorted(seeded_order(n, SPLIT_SEED)[:max_samples].tolist())


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

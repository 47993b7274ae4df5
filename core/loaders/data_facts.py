"""What a user's data must fit, read from the model's Hugging Face folder before any data is: the number of
classes and their names, the longest token sequence, the image size, channels and normalisation — and the
labels of a data file turned into class indices against them (one line naming the file when they do not fit).
A reader (data_text, data_images, data_datasets) describes what it found as Parts, which core.user_data picks
rows from.

Only JSON is read here (config.json through core.preflight's bounded reader, preprocessor_config.json the same
way): no transformers import, no model built."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core import preflight
from core.config import parse_json
from core.errors import PruneLabError
from core.limits import MAX_CONFIG
from core.user_code import some

DEFAULT_NAME = re.compile(r"LABEL_\d+")  # what transformers calls classes nobody named
PROCESSOR_FILE = "preprocessor_config.json"
CHANNEL_MODES = {1: "L", 3: "RGB"}  # PIL's mode for a model input of this many channels
INTEGER = re.compile(r"[+-]?\d+")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class ImageRecipe:
    """How an image becomes the model's input: size (height, width; None keeps the images' own), PIL mode
    ('L' one channel, 'RGB' three), PIL resampling filter, rescale factor (pixel values 0..255 times it) and
    per-channel mean/std (None: not normalised)."""

    size: tuple[int, int] | None = None
    mode: str | None = None  # None: the first image's own (L or RGB)
    resample: int = 2  # PIL's BILINEAR, the Hugging Face image processors' default
    rescale: float = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What the model in `folder` expects of its data (every field None/empty when unknown)."""

    folder: Path | None = None
    classes: int | None = None
    names: tuple[str, ...] = ()  # the config's class names in id order, when someone named them
    max_positions: int | None = None  # position embeddings: the longest token sequence the model takes
    image: ImageRecipe = ImageRecipe()


@dataclass(frozen=True)
class Part:
    """One part of a user's data set — "train", "test", or "all" (split by core.user_data) — as a reader found
    it: how many rows it has, and rows(indices) -> (inputs: a list of texts or data_images.Images, raw labels)
    reading only those rows. `where` is what messages name (the file, or the folder and split)."""

    size: int
    rows: Callable[[Sequence[int]], tuple[Any, list[Any]]]
    where: str
    unit: str = "row"  # what a message calls one of its rows ("line" in a JSONL file)


def model_facts(folder: Path | None, image_shape: tuple[int, ...] | None = None) -> ModelFacts:
    """ModelFacts of a Hugging Face model folder (None: a model without one — nothing is known but image_shape,
    the (channels, height, width) of the model's own example input, which the images are made to fit)."""
    if folder is None:
        size, mode = (tuple(image_shape[1:]), CHANNEL_MODES.get(image_shape[0])) if image_shape else (None, None)
        return ModelFacts(image=ImageRecipe(size=size, mode=mode))
    config = preflight.hf_config(folder / "config.json")
    id2label = config.get("id2label")
    names = tuple(str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))) if isinstance(
        id2label, dict) and all(str(k).isdigit() for k in id2label) else ()
    classes = len(names) if names else _int(config.get("num_labels"))
    named = names if names and not all(DEFAULT_NAME.fullmatch(n) for n in names) else ()
    positions = _int(config.get("max_position_embeddings", config.get("n_positions")))
    return ModelFacts(folder, classes, named, positions, _recipe(folder, config))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _recipe(folder: Path, config: dict[str, Any]) -> ImageRecipe:
    """The image recipe of the folder's preprocessor_config.json (the Hugging Face image processor's settings),
    else of config.json's image_size and num_channels."""
    processor = _processor(folder / PROCESSOR_FILE)
    channels = _int(config.get("num_channels"))
    mode = CHANNEL_MODES.get(channels or 0)
    size = _size(processor.get("crop_size") if processor.get("do_center_crop") else None) or _size(
        processor.get("size")) or _size(config.get("image_size"))
    normalise = processor.get("do_normalize", False)
    mean, std = (_floats(processor.get("image_mean")), _floats(processor.get("image_std"))) if normalise else (None,
                                                                                                               None)
    factor = (_floats(processor.get("rescale_factor")) or (1 / 255,))[0]  # pixel values 0..255 become 0..1
    rescale = factor if processor.get("do_rescale", True) else 1.0
    return ImageRecipe(size, mode, _int(processor.get("resample")) or 2, rescale, mean, std)


def _processor(path: Path) -> dict[str, Any]:
    """preprocessor_config.json as a dict ({} when there is none), size-bounded like config.json."""
    if not path.is_file():
        return {}
    MAX_CONFIG.check(path.stat().st_size, f"{path} is")
    found = parse_json(path.read_bytes(), str(path), MAX_CONFIG.value())
    if not isinstance(found, dict):
        raise PruneLabError(f"{path} holds a JSON {type(found).__name__}, not an object of settings")
    return found


def _size(value: Any) -> tuple[int, int] | None:
    """(height, width) from an image processor's or config's size: an int, [h, w], {height, width} or
    {shortest_edge} (a square of that side: PruneLab resizes straight to it, without a centre crop)."""
    if isinstance(value, dict):
        value = [value.get("height"), value.get("width")] if "height" in value else value.get("shortest_edge")
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if isinstance(value, list) and len(value) == 2 and all(_int(v) for v in value):
        return value[0], value[1]
    return None


def _floats(value: Any) -> tuple[float, ...] | None:
    """A number or a non-empty list of numbers as floats; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (float(value),)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None


def class_ids(values: Sequence[Any], facts: ModelFacts, where: str, unit: str = "row",
              numbers: Sequence[int] | None = None, among: Sequence[Any] | None = None) -> tuple[torch.Tensor,
                                                                                                  tuple[str, ...]]:
    """Labels as int64 class indices, and the class names in id order when the labels were names (else ()).

    Integers (or text spelling one) are indices, checked against the model's classes. Names map through the
    model's own label names when its config has them, else in sorted order. A float, a fraction among numbers,
    a missing or empty value is one line naming `where` and the offending `unit` (numbers[i], 1-based, else
    i + 1). `among` (default: values) is every label of the data set: it decides between indices and names, and
    which names there are, so the parts of a data set map alike."""
    among = values if among is None else among
    named = any(_kind(v) == "name" for v in among)
    for i, value in enumerate(values):
        kind = _kind(value)
        if kind is None or (kind == "number" and not named):
            number = numbers[i] if numbers is not None else i + 1
            raise PruneLabError(f"{where}: labels must be integers or class names; {unit} {number} has {value!r}")
    if not named:
        return _checked(torch.tensor([int(v) for v in values], dtype=torch.int64), facts, where, unit, numbers), ()
    return _named([str(v).strip() for v in values], sorted({str(v).strip() for v in among}), facts, where)


def _kind(value: Any) -> str | None:
    """'int' for an integer or text spelling one, 'number' for text spelling another number, 'name' for other
    non-empty text, None for anything else (a float, a boolean, nothing)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return "int" if INTEGER.fullmatch(text) else "number" if NUMBER.fullmatch(text) else "name"


def _checked(y: torch.Tensor, facts: ModelFacts, where: str, unit: str,
             numbers: Sequence[int] | None) -> torch.Tensor:
    """y, once every label is one of the model's classes (when their number is known)."""
    n = facts.classes
    bad = ((y < 0) | (y >= n)).nonzero() if n else (y < 0).nonzero()
    if len(bad):
        i = int(bad[0])
        number = numbers[i] if numbers is not None else i + 1
        scope = f"one of the model's {n} classes (0..{n - 1})" if n else "a class index (0 or more)"
        raise PruneLabError(f"{where}: label {int(y[i])} ({unit} {number}) is not {scope}")
    return y


def _named(values: list[str], found: list[str], facts: ModelFacts, where: str) -> tuple[torch.Tensor,
                                                                                     tuple[str, ...]]:
    """Class names as indices: through the model's own names, else in the sorted order of every name `found`."""
    if facts.names:
        index = {name: i for i, name in enumerate(facts.names)}
        unknown = [v for v in found if v not in index]
        if unknown:
            raise PruneLabError(f"{where}: label names {some(unknown)} are not among the model's classes "
                                f"({', '.join(facts.names[:10])}{', …' if len(facts.names) > 10 else ''})")
        names = facts.names
    else:
        if facts.classes and len(found) > facts.classes:
            raise PruneLabError(f"{where}: {len(found)} label names ({some(found)}) but the model in {facts.folder} "
                                f"has {facts.classes} classes")
        names = tuple(found)
        index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[v] for v in values], dtype=torch.int64), names

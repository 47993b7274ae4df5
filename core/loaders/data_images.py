"""Image data: a folder with one sub-folder of PNG/JPEG images per class (optionally inside train/ and test/
split folders: see folder_parts), or the images of a `datasets` table — decoded with PIL one at a time,
converted to the model's channels, resized to its input size and normalised as its Hugging Face image
processor config says (core.loaders.data_facts.ImageRecipe)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import PruneLabError
from core.limits import MAX_DATA
from core.loaders.data_facts import ImageRecipe, Part
from core.user_code import one_line

SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "validation", "val")}  # a folder of split folders


@dataclass(frozen=True)
class Images:
    """Images decoded on demand: loaders[i]() gives the i-th as a PIL image, names[i] says where it is."""

    loaders: tuple[Callable[[], Any], ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.loaders)

    def __add__(self, other: Images) -> Images:
        return Images(self.loaders + other.loaders, self.names + other.names)


def pil() -> Any:
    """PIL.Image, or one line saying how to get it."""
    try:
        from PIL import Image
    except ImportError:
        raise PruneLabError("reading images needs the Pillow package: pip install pillow") from None
    return Image


def folder_parts(folder: Path) -> dict[str, Part]:
    """The parts of an image folder: "all" for class folders, "train" and "test" for split folders (train/ and
    test/, validation/ or val/, each holding class folders)."""
    subs = {p.name: p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    found = {part: next((subs[n] for n in names if n in subs), None) for part, names in SPLIT_FOLDERS.items()}
    if len(subs) == 2 and all(found.values()):
        return {part: _part(path) for part, path in found.items()}  # type: ignore[arg-type]
    return {"all": _part(folder)}


def _part(folder: Path) -> Part:
    files, classes = listing(folder)
    image = pil()

    def rows(picked: Sequence[int]) -> tuple[Images, list[Any]]:
        chosen = [files[i] for i in picked]
        return (Images(tuple(partial(_open, image, p) for p in chosen), tuple(map(str, chosen))),
                [classes[i] for i in picked])

    return Part(len(files), rows, f"image folder {folder}", "image")


def listing(folder: Path) -> tuple[list[Path], list[str]]:
    """(image files, their class-folder names), sorted; one line for an empty folder or an empty class."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise PruneLabError(f"image folder {folder} is empty: expected one sub-folder of PNG/JPEG images per class")
    files, names = [], []
    for sub in classes:
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not images:
            raise PruneLabError(f"image folder {folder}: class folder {sub.name!r} holds no PNG/JPEG images")
        files += images
        names += [sub.name] * len(images)
    return files, names


def _open(image: Any, path: Path) -> Any:
    """The image at path, decoded (PIL refuses decompression bombs, over ~179 M pixels, as it loads)."""
    try:
        with image.open(path) as opened:
            opened.load()
            return opened.copy()
    except Exception as e:
        raise PruneLabError(f"cannot read the image {path}: {one_line(e)}") from None


def stack(images: Images, recipe: ImageRecipe, where: str) -> torch.Tensor:
    """The images as one float32 tensor (n, channels, height, width), decoded one at a time: converted to the
    recipe's mode (else the first image's, L or RGB), resized to its size (else all must share the first
    image's), rescaled and normalised. The memory the tensor takes is checked against MAX_DATA once the first
    image is seen, before the others are decoded."""
    first = images.loaders[0]()
    mode = recipe.mode or (first.mode if first.mode in ("L", "RGB") else "RGB")
    height, width = recipe.size or (first.height, first.width)
    channels = 1 if mode == "L" else 3
    MAX_DATA.check(len(images) * channels * height * width * 4, f"{where}: {len(images):,} images of {channels}x"
                                                                f"{height}x{width} float32 take")
    out = np.empty((len(images), channels, height, width), dtype=np.float32)
    for i, (load, name) in enumerate(zip(images.loaders, images.names, strict=True)):
        img = (first if i == 0 else load()).convert(mode)
        if (img.height, img.width) != (height, width):
            if recipe.size is None:
                raise PruneLabError(f"{where}: images differ in size ({width}x{height} first, {img.width}x"
                                    f"{img.height} in {name}) and the model says no size to resize to")
            img = img.resize((width, height), resample=recipe.resample)
        pixels = np.asarray(img, dtype=np.float32) * recipe.rescale
        out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if recipe.mean is not None and recipe.std is not None:
        out -= _per_channel(recipe.mean, channels)  # in place: the tensor may be most of MAX_DATA
        out /= _per_channel(recipe.std, channels)
    return torch.from_numpy(out)


def _per_channel(values: tuple[float, ...], channels: int) -> np.ndarray:
    """values shaped (channels, 1, 1) to broadcast over images; one value serves every channel."""
    picked = values[:channels] if len(values) >= channels else values[:1] * channels
    return np.asarray(picked, dtype=np.float32)[:, None, None]

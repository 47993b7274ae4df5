"""What a file says about its own size, read cheaply before the file is, and held against core.limits.

- a weights file: its size on disk; a zip (what torch.save writes; torch.load inflates every member in memory)
  also the sum of its members' decompressed sizes from the central directory — a 4 MB .pt can declare 4.5 GB;
  a .safetensors file's header is validated by the safetensors reader itself before any tensor is copied
  (offsets inside the file, shapes matching them), so there the file's size is what memory it takes;
- an .npz data file: the npy header of each array it is asked for (shape and dtype), since numpy allocates an
  array whole from its header before reading its data;
- a Hugging Face config.json: its size, then its layer and label counts (transformers makes one Python object
  per layer and per label before it allocates a tensor), then the parameter count of the model it describes,
  built on the "meta" device (shapes without memory).

Every refusal is one PruneLabError line naming the file and the limit (see core.limits).
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.config import parse_json
from core.errors import PruneLabError
from core.limits import MAX_CONFIG, MAX_DATA, MAX_LABELS, MAX_LAYERS, MAX_PARAMS, MAX_WEIGHTS, MAX_ZIP_ENTRIES

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")  # files a Hugging Face folder may load weights from
COUNT_KEY = re.compile(r"(^|_)(layers?|depths?|blocks|experts)$")  # num_hidden_layers, n_layer, depths, ...
LABEL_KEYS = ("id2label", "label2id")
EOCD, ZIP64_LOCATOR = b"PK\x05\x06", b"PK\x06\x07"  # signatures of a zip's end records


def weights_file(path: Path) -> None:
    """Refuse a weights file that would take more than MAX_WEIGHTS: on disk, or (a zip) once decompressed."""
    MAX_WEIGHTS.check(path.stat().st_size, f"weights file {path} holds")
    if path.suffix == ".safetensors" or not zipfile.is_zipfile(path):
        return  # read as stored: what is on disk is what lands in memory
    try:
        with _zip(path) as z:
            inflated = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {type(e).__name__}: {e}") from None
    MAX_WEIGHTS.check(inflated, f"weights file {path} would decompress to")


def _zip(path: Path) -> zipfile.ZipFile:
    """The zip at path, opened once the number of members its end record declares is within MAX_ZIP_ENTRIES."""
    MAX_ZIP_ENTRIES.check(_zip_entries(path), f"{path} declares")
    return zipfile.ZipFile(path)


def _zip_entries(path: Path) -> int:
    """How many members a zip's end-of-central-directory record declares (zip64's own record past 65,534),
    read from the last 64 KB of the file; 0 when there is no such record (zipfile will then say so)."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 22 - 65535))  # the record (22 bytes) and the longest comment after it
        tail = f.read()
        at = tail.rfind(EOCD)
        if at < 0:
            return 0
        count = int.from_bytes(tail[at + 10:at + 12], "little")
        if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == ZIP64_LOCATOR:
            f.seek(int.from_bytes(tail[at - 12:at - 4], "little") + 32)  # total entries, 8 bytes at offset 32
            count = int.from_bytes(f.read(8), "little")
    return count


def npz_arrays(path: Path, names: Iterable[str]) -> None:
    """Refuse an .npz whose arrays called `names` declare more than MAX_DATA together (from their headers)."""
    wanted, declared = set(names), {}
    try:
        with _zip(path) as z:
            for info in z.infolist():
                name = info.filename.removesuffix(".npy")
                if name in wanted:
                    declared[name] = _npy_bytes(z, info) if info.filename.endswith(".npy") else (
                        info.file_size, "bytes")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise PruneLabError(f"cannot read {path} (not an .npz, corrupt or truncated?): {type(e).__name__}: "
                            f"{str(e)[:200]}") from None
    arrays = ", ".join(f"{k} {what}" for k, (_, what) in sorted(declared.items()))
    MAX_DATA.check(sum(size for size, _ in declared.values()), f"data file {path}: its arrays ({arrays}) declare")


def _npy_bytes(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, str]:
    """(bytes, 'shape dtype') of an npy member, from its header alone (the first few hundred bytes)."""
    fmt = np.lib.format
    with z.open(info) as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0  # 3.0: utf-8 names
        shape, _, dtype = read(f)
    return math.prod(shape) * dtype.itemsize, f"{shape} {dtype}"


def hf_config(path: Path) -> dict[str, Any]:
    """A Hugging Face config.json as a dict, refused (one line) when it is too big to read, unreadable, nested
    too deeply, or declares more layers or labels than the limits allow."""
    MAX_CONFIG.check(path.stat().st_size, f"{path} is")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PruneLabError(f"cannot read {path}: {e.strerror or e}") from None
    config = parse_json(data, str(path), MAX_CONFIG.value())  # depth, huge integers, BOM: as for our configs
    if not isinstance(config, dict):
        raise PruneLabError(f"{path} holds a JSON {type(config).__name__}, not an object of settings")
    for key, value in _items(config):
        count = _count(value)
        if key == "num_labels" or key in LABEL_KEYS:
            MAX_LABELS.check(len(value) if isinstance(value, dict) else count, f"{path}: {key} asks for")
        elif COUNT_KEY.search(key):
            MAX_LAYERS.check(count, f"{path}: {key} asks for")
    return config


def _items(config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of a config and of the settings objects nested in it (text_config, ...), without
    recursion (json.loads already accepted the depth)."""
    stack = [config]
    while stack:
        for key, value in stack.pop().items():
            yield str(key), value
            if isinstance(value, dict) and key not in LABEL_KEYS:
                stack.append(value)


def _count(value: Any) -> int:
    """A count a config value asks for: an integer, or the sum of a list of them (ResNet's depths); else 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, list):
        return sum(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return 0


def model_params(auto: Any, config: Any, path: Path) -> None:
    """Refuse a Hugging Face config whose model would have more than MAX_PARAMS parameters: the model is built
    from the config on the meta device (shapes only, no memory) and its parameters counted."""
    import torch

    try:
        with torch.device("meta"):
            model = auto.from_config(config)
    except Exception as e:
        text = str(e).strip().splitlines()
        raise PruneLabError(f"cannot build the model {path} describes: {type(e).__name__}: "
                            f"{text[0][:300] if text else ''}") from None
    MAX_PARAMS.check(sum(p.numel() for p in model.parameters()), f"{path} describes a model of")

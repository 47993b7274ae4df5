"""A Hugging Face `datasets` folder, as `Dataset.save_to_disk` or `DatasetDict.save_to_disk` writes it: a
text column (tokenised by core.loaders.data_text) or an image column (core.loaders.data_images) and a label
column. A DatasetDict's train and test (or validation) splits are used as they are; a single Dataset, or a
DatasetDict with only a train split, is one part that core.user_data splits. The `datasets` package is
imported only here, when such a folder is read; its arrow files are memory-mapped, and only the rows picked
are read."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from core.errors import PruneLabError
from core.limits import MAX_DATA
from core.loaders.data_facts import Part
from core.loaders.data_images import Images, pil
from core.loaders.data_text import HF_EXTRA, LABEL_COLUMN, TEXT_COLUMNS, present, text_column
from core.user_code import one_line, some

TEST_SPLITS = ("test", "validation", "valid", "val")  # the evaluation split of a DatasetDict: the first present
IMAGE_COLUMNS = ("image", "img")  # the image column when no text column is there: the first present


def is_datasets_folder(path: Path) -> bool:
    """Whether path is a folder save_to_disk wrote (a DatasetDict's dataset_dict.json, a Dataset's state.json)."""
    return (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file() and (
        path / "dataset_info.json").is_file())


def dataset_parts(path: Path, text: str | None, label: str | None) -> dict[str, Part]:
    """The parts of a datasets folder: {"train", "test"} from a DatasetDict's splits, else {"all"} (or {"test"}
    when a DatasetDict has only an evaluation split)."""
    MAX_DATA.check(sum(p.stat().st_size for p in path.rglob("*.arrow")), f"data folder {path}: its arrow files hold")
    loaded = _load(path)
    if not hasattr(loaded, "keys"):
        return {"all": _part(loaded, str(path), text, label)}
    splits = list(loaded.keys())
    test = next((s for s in TEST_SPLITS if s in splits), None)
    if "train" not in splits and test is None:
        raise PruneLabError(f"{path} holds the splits {some(splits)}; expected train and test (or validation)")
    parts = {part: _part(loaded[name], f"{path} ({name} split)", text, label) for part, name in (
        ("train", "train"), ("test", test)) if name in splits}
    return parts if test is not None else {"all": parts["train"]}


def _load(path: Path) -> Any:
    try:
        import datasets
    except ImportError:
        raise PruneLabError(f"{path} is a Hugging Face datasets folder: reading it needs the datasets package: "
                            f"{HF_EXTRA}") from None
    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:
        raise PruneLabError(f"cannot read the datasets folder {path}: {one_line(e)}") from None


def _part(table: Any, where: str, text: str | None, label: str | None) -> Part:
    """One split as a Part: its text or image column and its label column, read for the picked rows only."""
    columns = list(table.column_names)
    label = present(columns, label or LABEL_COLUMN, where)
    image = _image_column(table, columns) if text is None and not any(c in columns for c in TEXT_COLUMNS) else None
    source = image or text_column(columns, text, where)

    def rows(picked: Sequence[int]) -> tuple[Any, list[Any]]:
        chosen = table.select(list(picked))
        labels = list(chosen[label])
        if image is not None:
            pil()  # decoding needs Pillow: say so in one line before datasets fails deep inside
            names = tuple(f"{where} row {i + 1}" for i in picked)
            return Images(tuple(partial(_cell, chosen, i, image, n) for i, n in enumerate(names)), names), labels
        texts = list(chosen[source])
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise PruneLabError(f"{where}: row {picked[bad] + 1} has no text in column {source!r} "
                                f"(got {texts[bad]!r:.40})")
        return texts, labels

    return Part(len(table), rows, where)


def _image_column(table: Any, columns: list[str]) -> str | None:
    """The first column of the Image feature type, else of IMAGE_COLUMNS; None when there is none."""
    typed = [c for c in columns if type(table.features.get(c)).__name__ == "Image"]
    return next(iter(typed), None) or next((c for c in IMAGE_COLUMNS if c in columns), None)


def _cell(table: Any, row: int, column: str, name: str) -> Any:
    """The PIL image in one cell (datasets decodes it); name says where it is."""
    try:
        return table[row][column]
    except Exception as e:
        raise PruneLabError(f"cannot decode the image in {name}: {one_line(e)}") from None

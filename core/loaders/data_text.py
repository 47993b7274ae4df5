"""Text data: rows of (text, label) from a CSV or JSONL file or a `datasets` table, tokenised with the model's
own tokenizer, loaded from its Hugging Face folder with local files only (never remote code)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from core.errors import PruneLabError
from core.limits import MAX_DATA
from core.loaders.data_facts import ModelFacts, Part
from core.user_code import one_line

TEXT_COLUMNS = ("text", "sentence")  # the text column when none is chosen: the first of these a file has
LABEL_COLUMN = "label"
# Longest token sequence kept when neither the tokenizer nor the config says less: BERT-family encoders are
# trained on 512 positions, and attention costs grow with its square, so longer inputs only slow every
# measurement; rows are padded to the longest row read (within this cap), not to the cap.
MAX_TOKENS = 512
HF_EXTRA = 'pip install -e ".[hf]"'
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")  # or a *.model file


def text_column(columns: Sequence[str], chosen: str | None, where: str) -> str:
    """The text column: the chosen one, else the first of TEXT_COLUMNS present; one line when there is none."""
    if chosen is not None:
        return present(columns, chosen, where)
    found = next((c for c in TEXT_COLUMNS if c in columns), None)
    if found is None:
        raise PruneLabError(f"{where} has no text column ({' or '.join(TEXT_COLUMNS)}; choose one with "
                            f"--text-column); its columns: {listed(columns)}")
    return found


def present(columns: Sequence[str], name: str, where: str) -> str:
    """name, when it is one of the columns; else one line listing those there are."""
    if name not in columns:
        raise PruneLabError(f"{where} has no column {name!r} (its columns: {listed(columns)})")
    return name


def listed(columns: Sequence[str], n: int = 10) -> str:
    """The first n column names in the file's order, and how many more there are."""
    more = f" (+{len(columns) - n} more)" if len(columns) > n else ""
    return (", ".join(columns[:n]) or "none") + more


def file_part(path: Path, text: str | None, label: str | None, limit: int) -> Part:
    """A .csv or .jsonl file as one part ("all" of a data set): its first `limit` rows, held as text."""
    texts, labels, unit = read_rows(path, text, label, limit)
    return Part(len(texts), lambda picked: ([texts[i] for i in picked], [labels[i] for i in picked]), str(path),
                unit)


def read_rows(path: Path, text: str | None, label: str | None, limit: int) -> tuple[list[str], list[Any], str]:
    """(texts, labels, unit) of the first `limit` rows of a .csv or .jsonl file; unit names a row in messages."""
    MAX_DATA.check(path.stat().st_size, f"data file {path} holds")  # before a line is read
    unit = "row" if path.suffix == ".csv" else "line"
    texts, labels = [], []
    try:
        for columns, row in _csv(path) if path.suffix == ".csv" else _jsonl(path):
            if not texts:  # the first row says which columns there are
                text = text_column(columns, text, str(path))
                label = present(columns, label or LABEL_COLUMN, str(path))
            texts.append(_text(row, text, path, unit, len(texts) + 1))
            labels.append(row.get(label))
            if len(texts) == limit:
                break
    except PruneLabError:
        raise
    except Exception as e:  # undecodable bytes, a field over csv's limit, ...
        raise PruneLabError(f"cannot read {path}: {one_line(e)}") from None
    if not texts:
        raise PruneLabError(f"{path} has no rows")
    return texts, labels, unit


def _text(row: dict, column: str, path: Path, unit: str, number: int) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise PruneLabError(f"{path}: {unit} {number} has no text in column {column!r} (got {value!r:.40})")
    return value


def _csv(path: Path) -> Iterator[tuple[list[str], dict]]:
    """(header, row) of each row of a CSV file (a UTF-8 byte order mark allowed)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise PruneLabError(f"{path} has no rows (not even a header)")
        for row in reader:
            yield list(reader.fieldnames), row


def _jsonl(path: Path) -> Iterator[tuple[list[str], dict]]:
    """(keys, object) of each non-blank line of a JSONL file: one JSON object per line."""
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
            if not isinstance(row, dict):
                raise PruneLabError(f"{path}: line {number} is not a JSON object")
            yield [str(k) for k in row], row


def tokenise(texts: list[str], facts: ModelFacts, where: str) -> torch.Tensor:
    """Token ids (rows, longest row) int64, from the model's own tokenizer, truncated to the longest sequence
    the model and tokenizer take (at most MAX_TOKENS) and padded with the tokenizer's padding id."""
    tok = _tokenizer(facts, where)
    cap = min(n for n in (facts.max_positions, _tokenizer_cap(tok), MAX_TOKENS) if n)
    MAX_DATA.check(len(texts) * cap * 8, f"{where}: {len(texts):,} rows of up to {cap} tokens (int64) take")
    try:
        ids = tok(texts, padding="longest", truncation=True, max_length=cap, return_tensors="np")["input_ids"]
    except Exception as e:
        raise PruneLabError(f"{where}: the tokenizer in {facts.folder} failed: {one_line(e)}") from None
    return torch.from_numpy(ids.astype("int64"))


def _tokenizer_cap(tok: Any) -> int | None:
    """The tokenizer's own longest input, unless it is transformers' 'no limit' sentinel (about 1e30)."""
    n = getattr(tok, "model_max_length", None)
    return n if isinstance(n, int) and 0 < n < 1_000_000 else None


def _tokenizer(facts: ModelFacts, where: str) -> Any:
    """The tokenizer saved in the model's folder (local files, no remote code); a padding token borrowed from
    the end-of-text token when it has none (GPT-2 style tokenizers), since rows are padded to one length."""
    if facts.folder is None:
        raise PruneLabError(f"{where} is text: it needs the model's tokenizer, which only a Hugging Face model "
                            "folder carries (give the folder as the model, or token ids in an .npz)")
    try:
        import transformers
    except ImportError:
        raise PruneLabError(f"{where} is text: tokenising it needs the transformers package: {HF_EXTRA}") from None
    if not any((facts.folder / name).is_file() for name in TOKENIZER_FILES) and not any(facts.folder.glob("*.model")):
        # transformers 5 would build an empty tokenizer from the model type alone: every word [UNK]
        raise PruneLabError(f"{where} is text: there is no tokenizer in {facts.folder} (none of "
                            f"{', '.join(TOKENIZER_FILES)}; save the model's there with tokenizer.save_pretrained)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(facts.folder), local_files_only=True,
                                                         trust_remote_code=False)
    except Exception as e:
        raise PruneLabError(f"{where} is text: the tokenizer in {facts.folder} does not load: {one_line(e)}") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise PruneLabError(f"{where}: the tokenizer in {facts.folder} has no padding or end-of-text token to "
                                "pad rows to one length with")
        tok.pad_token = tok.eos_token
    return tok

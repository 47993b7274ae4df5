"""The tiny-lm sample's text, tokenizer and fixed train/validation split.

Text: the English reference documentation that ships with Python (`pydoc_data.topics`, 79 topics, 464,970
characters in Python 3.11.7; PSF licence). It changes between Python versions, so the topics the committed
weights were trained on are snapshotted in data/pydoc_topics.json.gz; nothing is read from the running Python.

Tokenizer: character-level, in data/tiny-lm-tokenizer.json — every character of the training text gets an id
from 1 up (sorted by code point), id 0 stands for any other character. Chosen over a small BPE because it needs
no package (HF `tokenizers` is an optional extra here) and its vocabulary (104 ids) keeps the embedding and
output layers a small share of the model, so pruning its blocks is what changes the size.

Split (fixed, no randomness needed): each topic, in sorted order, gives its first 95% of characters to training
and its last 5% to validation; the parts are joined with a blank line. Both texts are cut into
non-overlapping windows of CONTEXT + 1 tokens: the input is the first CONTEXT tokens, the targets the next
token at every position (the window shifted by one).
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import torch

from core.data import Split

DATA_DIR = Path(__file__).parent / "data"
CORPUS_PATH = DATA_DIR / "pydoc_topics.json.gz"
TOKENIZER_PATH = DATA_DIR / "tiny-lm-tokenizer.json"
CONTEXT = 128  # tokens per window (the model's context length)
VALID_SHARE = 0.05  # the last 5% of every topic's characters are held out (~23K: evaluation stays a few seconds)
UNKNOWN_ID = 0


def write_snapshot() -> None:
    """Snapshot the running Python's pydoc_data topics and build the tokenizer from them (done once; the
    committed files are what training and evaluation read)."""
    from pydoc_data.topics import topics

    DATA_DIR.mkdir(exist_ok=True)
    CORPUS_PATH.write_bytes(gzip.compress(json.dumps(topics, sort_keys=True).encode(), mtime=0))
    chars = sorted(set(_joined(_parts(topics)[0])))
    TOKENIZER_PATH.write_text(json.dumps({"kind": "character", "unknown_id": UNKNOWN_ID, "chars": chars},
                                         ensure_ascii=False, indent=0) + "\n")


@cache
def topics() -> dict[str, str]:
    """The snapshotted topics, by name."""
    return json.loads(gzip.decompress(CORPUS_PATH.read_bytes()))


def _parts(by_name: dict[str, str]) -> tuple[list[str], list[str]]:
    """Per topic (sorted by name): the first 95% of its characters for training, the rest for validation."""
    train, valid = [], []
    for name in sorted(by_name):
        text = by_name[name]
        cut = round(len(text) * (1 - VALID_SHARE))
        train.append(text[:cut])
        valid.append(text[cut:])
    return train, valid


def _joined(parts: list[str]) -> str:
    return "\n\n".join(parts)


def texts() -> tuple[str, str]:
    """(training text, validation text)."""
    train, valid = _parts(topics())
    return _joined(train), _joined(valid)


@cache
def vocabulary() -> dict[str, int]:
    """Character -> id (1..); id 0 is every character not in it."""
    chars = json.loads(TOKENIZER_PATH.read_text())["chars"]
    return {c: i + 1 for i, c in enumerate(chars)}


def vocab_size() -> int:
    return len(vocabulary()) + 1  # + the unknown id


def encode(text: str) -> torch.Tensor:
    """Token ids of text, int64 (1-D)."""
    vocab = vocabulary()
    return torch.tensor([vocab.get(c, UNKNOWN_ID) for c in text], dtype=torch.long)


def decode(ids: torch.Tensor | list[int]) -> str:
    """The text of token ids (the unknown id reads as U+FFFD)."""
    chars = {i: c for c, i in vocabulary().items()}
    return "".join(chars.get(int(i), "\ufffd") for i in ids)


def windows(ids: torch.Tensor, context: int = CONTEXT, stride: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, context) and next-token targets (n, context) from windows of ids starting every `stride`
    tokens (default: context, i.e. not overlapping)."""
    stride = stride or context
    starts = torch.arange(0, len(ids) - context, stride)
    index = starts[:, None] + torch.arange(context + 1)[None, :]
    chunks = ids[index]
    return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()


@cache
def split() -> Split:
    """The fixed split as windows: train_x/train_y and test_x/test_y (validation), int64 (n, CONTEXT)."""
    train, valid = texts()
    return Split(*windows(encode(train)), *windows(encode(valid)))


TRAINING_STRIDE = CONTEXT // 4  # training from scratch sees the text in windows starting every 32 tokens


def training_windows() -> tuple[torch.Tensor, torch.Tensor]:
    """What the committed weights were trained on: the training text in windows overlapping by three quarters."""
    return windows(encode(texts()[0]), stride=TRAINING_STRIDE)


def unigram_perplexity() -> float:
    """Perplexity on the validation targets of the best context-free model: each token's frequency in the
    training text (add-one smoothed) — the bar a language model must clear to have learned anything."""
    s = split()
    counts = torch.bincount(s.train_y.reshape(-1), minlength=vocab_size()).double() + 1
    log_p = (counts / counts.sum()).log()
    return float(torch.exp(-log_p[s.test_y.reshape(-1)].mean()))


if __name__ == "__main__":
    write_snapshot()

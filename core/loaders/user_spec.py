"""A user's module made into a ModelSpec, whichever loader found it: a batch-of-one example, the logits
reached (a forward that returns an object with `.logits`, a dict or a tuple is wrapped in LogitsOnly, whose
child `model` is the user's module, so layer names read `model.<name>`), labels checked against the classes,
and a one-line summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.convert import make_prunable
from core.data import Split
from core.errors import PruneLabError
from core.spec import ModelSpec, fingerprint
from core.user_code import one_line


class LogitsOnly(nn.Module):
    """Returns the logits tensor of a model whose forward returns something else: the `.logits` of an
    output object (Hugging Face), `output[key]` of a dict, or the first element of a tuple or list."""

    def __init__(self, model: nn.Module, how: str, key: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.how, self.key = how, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x, attention_mask=(x != pad).long()) if (pad := self._pad_id(x)) is not None else self.model(x)
        if self.how == "attr":
            return out.logits
        if self.how == "key":
            return out[self.key]
        return out[0]


    def _pad_id(self, x: torch.Tensor) -> int | None:
        """The padding token id of a Hugging Face text model given token ids: padded rows (a CSV's short texts)
        must not be attended to, as the model's own tokenizer pipeline would mask them. None otherwise."""
        return None if x.is_floating_point() else self.pad_token_id

    @property
    def pad_token_id(self) -> int | None:
        """The wrapped Hugging Face model's padding token id (None: none), which calibration statistics skip too
        (core.token_positions)."""
        pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        return pad if isinstance(pad, int) and not isinstance(pad, bool) else None


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own module inside a LogitsOnly wrapper (or model itself)."""
    return model.model if isinstance(model, LogitsOnly) else model


def _logits_access(out: Any, where: str) -> tuple[str, str | None] | None:
    """How to reach the logits tensor in a forward's output: None (it is one), ("attr", None) for `.logits`,
    ("key", k) for a dict entry, ("index", None) for the first element of a tuple/list."""
    if isinstance(out, torch.Tensor):
        return None
    if isinstance(getattr(out, "logits", None), torch.Tensor):  # before dict: HF outputs are dicts too
        return "attr", None
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return "key", "logits"
        key = next((k for k, v in out.items() if isinstance(v, torch.Tensor)), None)
        if isinstance(key, str):
            return "key", key
        raise PruneLabError(f"{where}: the model returns a dict without a tensor under a string key")
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return "index", None
    raise PruneLabError(f"{where}: the model returns {type(out).__name__}; expected logits (a tensor, an object "
                        "with .logits, a dict or a tuple whose first element is the logits)")


def _with_tensor_output(model: nn.Module, example: torch.Tensor, where: str) -> nn.Module:
    """model, wrapped in LogitsOnly if its forward does not return a tensor; checks the logits' shape."""
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as e:
        raise PruneLabError(f"{where}: the model fails on example_input {tuple(example.shape)}: "
                            f"{one_line(e)}") from None
    how = _logits_access(out, where)
    if how is not None:
        model = LogitsOnly(model, *how).eval()
        with torch.no_grad():
            out = model(example)
    if out.dim() != 2 or out.shape[0] != len(example):
        raise PruneLabError(f"{where}: the model's logits must have shape (batch, classes); got {tuple(out.shape)} "
                            f"for example_input {tuple(example.shape)}")
    return model


def finish(ref: str, where: str, model: nn.Module, example: torch.Tensor, split: Split | None, summary: str,
            metric: Callable[[nn.Module], dict[str, float]] | None = None,
            sample_inputs: torch.Tensor | None = None) -> ModelSpec:
    """The ModelSpec of a user model: batch-of-one example, logits checked (wrapped when needed)."""
    if not isinstance(model, nn.Module):
        raise PruneLabError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise PruneLabError(f"{where}: example_input must be a torch.Tensor, got {type(example).__name__}")
    if example.dim() == 0 or len(example) == 0:
        raise PruneLabError(f"{where}: example_input needs a batch dimension, got shape {tuple(example.shape)}")
    example = example[:1].detach().cpu().clone()  # a batch of one, whatever batch the user gave
    notes = make_prunable(model)  # Conv1D -> Linear, MultiheadAttention -> q/k/v: same function, prunable parts
    summary = "; ".join([summary, *notes])
    model = _with_tensor_output(model.cpu().eval(), example, where)
    if split is not None:
        _check_labels(split, model, where)
    if split is not None and len(split.train_x) == 0 and sample_inputs is None:
        sample_inputs = split.test_x  # calibration inputs of a model without training data (see report)
    return ModelSpec(ref, model, example, split, summary, fingerprint(model), metric, sample_inputs)


@torch.no_grad()
def _check_labels(split: Split, model: nn.Module, where: str) -> None:
    classes = model(split.test_x[:1]).shape[1]
    for part, y in (("evaluation", split.test_y), ("training", split.train_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise PruneLabError(f"{where}: {part} labels must be class indices 0..{classes - 1} (the model has "
                                f"{classes} outputs), got {int(y.min())}..{int(y.max())}")


def summary_line(what: str, model: nn.Module, split: Split | None, metric) -> str:
    params = sum(p.numel() for p in model.parameters())
    data = (f"{len(split.test_x):,} evaluation / {len(split.train_x):,} training examples" if split is not None
            else "no data")
    return f"{what}: {params:,} parameters; {data}" + ("; custom metric" if metric is not None else "")

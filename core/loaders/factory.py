"""`path/to/file.py:build`: the file is imported by path (core.user_code) and build() called; it returns a
ModelSpec or a dict of model, example_input, eval_loader and optionally train_loader and metric."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.data import Split
from core.errors import PruneLabError
from core.loaders.user_spec import finish, summary_line, unwrap
from core.spec import ModelSpec
from core.user_code import import_file, on_sys_path, one_line
from core.user_data import materialise
from core.weights import load_weights

DICT_KEYS = ("model", "example_input", "eval_loader")  # required keys of a factory's dict
OPTIONAL_KEYS = ("train_loader", "metric")


def from_factory(ref: str, path: Path, func: str, weights: str | None, trust_pickle: bool,
                  max_samples: int) -> ModelSpec:
    if not path.is_file():
        raise PruneLabError(f"model file {path} not found")
    if path.suffix != ".py":
        raise PruneLabError(f"model file {path} is not a .py file (expected file.py:{func})")
    module = import_file(path)
    build = getattr(module, func, None)
    if not callable(build):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise PruneLabError(f"{path} has no function {func!r}" + (f" (it defines {', '.join(found[:8])})"
                                                                  if found else ""))
    where = f"{path}:{func}"
    try:
        with on_sys_path(path.resolve().parent):
            made = build()
    except Exception as e:
        raise PruneLabError(f"{where}() raised {one_line(e)}") from None
    if isinstance(made, ModelSpec):
        return _from_spec(ref, where, made, weights, trust_pickle)
    if not isinstance(made, dict):
        raise PruneLabError(f"{where}() must return a dict (model, example_input, eval_loader, optional "
                            f"train_loader and metric) or a ModelSpec, got {type(made).__name__}")
    missing = [k for k in DICT_KEYS if k not in made]
    if missing:
        raise PruneLabError(f"{where}() returned a dict without {', '.join(missing)} (needs "
                            f"{', '.join(DICT_KEYS)}; optional {', '.join(OPTIONAL_KEYS)})")
    unknown = sorted(set(made) - set(DICT_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise PruneLabError(f"{where}() returned unknown key(s) {', '.join(map(str, unknown))} (known: "
                            f"{', '.join(DICT_KEYS + OPTIONAL_KEYS)})")
    model, example = made["model"], made["example_input"]
    if not isinstance(model, nn.Module):
        raise PruneLabError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise PruneLabError(f"{where}: example_input must be a torch.Tensor, got {type(example).__name__}")
    test_x, test_y = materialise(made["eval_loader"], max_samples, f"{where}: eval_loader")
    if len(test_x) == 0:
        raise PruneLabError(f"{where}: eval_loader yielded no examples")
    if made.get("train_loader") is not None:
        train_x, train_y = materialise(made["train_loader"], max_samples, f"{where}: train_loader")
    else:
        train_x, train_y = test_x[:0], test_y[:0]  # empty: fine-tuning and sweeps say they need training data
    if weights is not None:
        load_weights(model, weights, trust_pickle)
    metric = _metric(made.get("metric"), made["eval_loader"], where)
    split = Split(train_x, train_y, test_x, test_y)
    summary = summary_line(f"user model {where}", model, split, metric)
    spec = finish(ref, where, model, example, split, summary, metric)
    if metric is not None:  # fail now, with the file's name, not in the middle of a run
        spec.metric(spec.model)
    return spec


def _from_spec(ref: str, where: str, spec: ModelSpec, weights: str | None, trust_pickle: bool) -> ModelSpec:
    """A factory's own ModelSpec, renamed to the reference (configs name it so) and fingerprinted again."""
    if spec.split is not None and not isinstance(spec.split, Split):
        raise PruneLabError(f"{where}: ModelSpec.split must be a core.data.Split or None")
    if not isinstance(spec.model, nn.Module):
        raise PruneLabError(f"{where}: model must be a torch.nn.Module, got {type(spec.model).__name__}")
    if weights is not None:
        load_weights(spec.model, weights, trust_pickle)
    own = spec.metric
    metric = None if own is None else (lambda model: own(unwrap(model)))  # given their module, as they wrote it
    return finish(ref, where, spec.model, spec.example_input, spec.split, spec.summary or f"user model {where}",
                   metric, spec.sample_inputs)


def _metric(fn: Any, loader: Iterable, where: str) -> Callable[[nn.Module], dict[str, float]] | None:
    """The factory's metric(model, eval_loader) as ModelSpec.metric(model) -> {name: value}, given the user's
    own module (inside any LogitsOnly wrapper), in eval mode, without gradients."""
    if fn is None:
        return None
    if not callable(fn):
        raise PruneLabError(f"{where}: metric must be a function metric(model, eval_loader), got {type(fn).__name__}")
    label = getattr(fn, "__name__", "metric")
    label = label if label.isidentifier() and label != "<lambda>" else "metric"

    def metric(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                value = fn(unwrap(model), loader)
        except Exception as e:
            raise PruneLabError(f"the metric of {where} raised {one_line(e)}") from None
        finally:
            model.train(was_training)
        values = value if isinstance(value, dict) else {label: value}
        try:
            return {str(k): float(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise PruneLabError(f"the metric of {where} must return a number or a dict of numbers, got "
                                f"{value!r:.100}") from None

    return metric

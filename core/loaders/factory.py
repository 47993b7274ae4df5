"""`path/to/file.py:build`: the file is imported by path (core.user_code) and build() called; it returns a
ModelSpec or a dict of model, example_input, eval_loader and optionally train_loader and metric — or, when the
data is given with --data (any format core.user_data reads), only model and example_input (and a metric)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.data import Split, batches
from core.errors import PruneLabError
from core.loaders.user_spec import finish, summary_line, unwrap
from core.spec import ModelSpec
from core.user_code import import_file, on_sys_path, one_line
from core.user_data import load_reference, materialise
from core.weights import load_weights

DICT_KEYS = ("model", "example_input", "eval_loader")  # required keys of a factory's dict
OPTIONAL_KEYS = ("train_loader", "metric")
LOADER_KEYS = ("eval_loader", "train_loader")  # what --data replaces: given both, the factory's call is refused
METRIC_BATCH = 64  # examples per batch of the evaluation loader a metric is given when the data came from --data


def from_factory(ref: str, path: Path, func: str, weights: str | None, trust_pickle: bool, data: str | None,
                 max_samples: int) -> ModelSpec:
    where = f"{path}:{func}"
    made = _call(path, func)
    if isinstance(made, ModelSpec):
        if data is not None:
            raise PruneLabError(f"{where}() returns a ModelSpec, which carries its own data, and --data was given: "
                                "drop one of them")
        return _from_spec(ref, where, made, weights, trust_pickle)
    _check_dict(made, where, data)
    model, example = made["model"], made["example_input"]
    if not isinstance(model, nn.Module):
        raise PruneLabError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise PruneLabError(f"{where}: example_input must be a torch.Tensor, got {type(example).__name__}")
    split, eval_loader = _data(made, where, data, example, max_samples)
    if weights is not None:
        load_weights(model, weights, trust_pickle)
    metric = _metric(made.get("metric"), eval_loader, where)
    summary = summary_line(f"user model {where}", model, split, metric)
    spec = finish(ref, where, model, example, split, summary, metric)
    if metric is not None:  # fail now, with the file's name, not in the middle of a run
        spec.metric(spec.model)
    return spec


def _call(path: Path, func: str) -> Any:
    """What path's function `func` returns: the file imported by path, its folder on sys.path while it runs."""
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
    try:
        with on_sys_path(path.resolve().parent):
            return build()
    except Exception as e:
        raise PruneLabError(f"{path}:{func}() raised {one_line(e)}") from None


def _check_dict(made: Any, where: str, data: str | None) -> None:
    """made is a dict with the keys it needs: eval_loader unless --data brings the data, and then no loaders
    (which data would count is not ours to guess)."""
    if not isinstance(made, dict):
        raise PruneLabError(f"{where}() must return a dict (model, example_input, eval_loader, optional "
                            f"train_loader and metric) or a ModelSpec, got {type(made).__name__}")
    needed = DICT_KEYS if data is None else DICT_KEYS[:2]
    missing = [k for k in needed if k not in made]
    if missing:
        raise PruneLabError(f"{where}() returned a dict without {', '.join(missing)} (needs "
                            f"{', '.join(DICT_KEYS)}; optional {', '.join(OPTIONAL_KEYS)})"
                            + ("; or give --data for the data" if "eval_loader" in missing else ""))
    unknown = sorted(set(made) - set(DICT_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise PruneLabError(f"{where}() returned unknown key(s) {', '.join(map(str, unknown))} (known: "
                            f"{', '.join(DICT_KEYS + OPTIONAL_KEYS)})")
    if data is not None and (loaders := [k for k in LOADER_KEYS if made.get(k) is not None]):
        raise PruneLabError(f"{where}() returns its own {' and '.join(loaders)} and --data was given: drop one "
                            "of them")


def _data(made: dict, where: str, data: str | None, example: torch.Tensor, max_samples: int) -> tuple[Split, Iterable]:
    """The factory's Split and the evaluation batches its metric gets: read from --data (images made to fit the
    example input's channels, height and width), else materialised from its loaders."""
    if data is not None:
        split = load_reference(data, image_shape=tuple(example.shape[1:]) if example.dim() == 4 else None,
                               max_samples=max_samples)
        return split, list(batches(split.test_x, split.test_y, METRIC_BATCH))
    test_x, test_y = materialise(made["eval_loader"], max_samples, f"{where}: eval_loader")
    if len(test_x) == 0:
        raise PruneLabError(f"{where}: eval_loader yielded no examples")
    if made.get("train_loader") is not None:
        train_x, train_y = materialise(made["train_loader"], max_samples, f"{where}: train_loader")
    else:
        train_x, train_y = test_x[:0], test_y[:0]  # empty: fine-tuning and sweeps say they need training data
    return Split(train_x, train_y, test_x, test_y), made["eval_loader"]


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

"""Models users bring without editing PruneLab: a Python factory, a pickled module or a Hugging Face folder.

`core.models.load(name, ...)` sends every name that is not a registry name here. A reference is one of

- `path/to/file.py:build` — the file is imported by path (under a unique module name; its folder is on
  sys.path only while it is imported and `build()` runs) and `build()` is called. It returns a ModelSpec
  or a dict: `model` (nn.Module), `example_input` (a tensor; when its first dimension is not 1 only
  `example_input[:1]` is kept: PruneLab traces and exports with a batch of one), `eval_loader` (an
  iterable of (inputs, labels) batches), optionally `train_loader` (the same; without it fine-tuning and
  sensitivity sweeps are unavailable) and `metric(model, eval_loader) -> float | dict` (reported beside
  accuracy; a float is named after the function, e.g. `def f1(...)` gives "f1");
- `path/to/model.pt` — a whole pickled nn.Module: unpickling runs code, so it needs `trust_pickle=True`
  (`--trust-pickle`), and data from `data=FILE.npz`;
- `path/to/folder` holding a Hugging Face `config.json` (an image or sequence classifier): loaded with
  transformers from local files only, never with remote code; data from `data=FILE.npz`.

An .npz data file holds `x` (inputs) and `y` (integer labels), optionally `x_train`/`y_train` (for
fine-tuning); it is read without pickles. Loaders and arrays are materialised on the CPU, at most
`max_samples` examples each (the first ones: give an evaluation loader without shuffling).

`weights=` loads a state dict into the model strictly: `.pt`/`.pth` read weights-only (a state dict, or a
dict holding one under "state_dict" or "model"; a pickled module only with trust_pickle) or `.safetensors`.

A model whose forward returns an object with `.logits`, a dict or a tuple is wrapped in LogitsOnly, which
returns the logits tensor; the original module is its child `model`, so layer names (the keys of a
config's ratios) read `model.<name>`. A custom metric is still given the original module.

The spec's name is the reference as given (configs carry it, `prunelab apply` loads it again, relative
paths from the same folder); its fingerprint refuses configs made for other weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core import preflight
from core.data import Split
from core.errors import PruneLabError
from core.models import ModelSpec, fingerprint

DICT_KEYS = ("model", "example_input", "eval_loader")  # required keys of a factory's dict
OPTIONAL_KEYS = ("train_loader", "metric")
PICKLE_SUFFIXES = (".pt", ".pth")
NPZ_KEYS = ("x", "y", "x_train", "y_train")  # the arrays of an .npz data file (the only ones read)
_imports = itertools.count()


def _short(e: BaseException) -> str:
    """'Type: first line of the message', at most 300 characters: an exception on one line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


class LogitsOnly(nn.Module):
    """Returns the logits tensor of a model whose forward returns something else: the `.logits` of an
    output object (Hugging Face), `output[key]` of a dict, or the first element of a tuple or list."""

    def __init__(self, model: nn.Module, how: str, key: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.how, self.key = how, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.how == "attr":
            return out.logits
        if self.how == "key":
            return out[self.key]
        return out[0]


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
        raise PruneLabError(f"{where}: the model fails on example_input {tuple(example.shape)}: {_short(e)}") from None
    how = _logits_access(out, where)
    if how is not None:
        model = LogitsOnly(model, *how).eval()
        with torch.no_grad():
            out = model(example)
    if out.dim() != 2 or out.shape[0] != len(example):
        raise PruneLabError(f"{where}: the model's logits must have shape (batch, classes); got {tuple(out.shape)} "
                            f"for example_input {tuple(example.shape)}")
    return model


# --- references -------------------------------------------------------------------------------------------

def _split_ref(ref: str) -> tuple[Path, str | None]:
    """('file.py', 'build') for 'file.py:build'; (path, None) for anything else (a Windows drive's colon is
    not a separator: what follows the last colon must be a Python name)."""
    path, sep, func = ref.rpartition(":")
    if sep and path and func.isidentifier():
        return Path(path), func
    return Path(ref), None


def looks_like_path(ref: str) -> bool:
    """Whether a model name is meant as a user model (a path or file.py:function) rather than a registry
    name: it names an existing file or folder, contains a path separator or ':', or ends like a model file."""
    return (any(c in ref for c in "/\\:") or ref.endswith((".py", *PICKLE_SUFFIXES, ".safetensors"))
            or Path(ref).exists())


def describe_reference(ref: str) -> str:
    """What loading a user model reference would do, with its absolute path, for a refusal or a warning."""
    path, func = _split_ref(ref)
    where = path.expanduser().absolute()
    if func is not None:
        return f"loading it runs the Python file {where}"
    if path.suffix in PICKLE_SUFFIXES:
        return f"loading it unpickles {where}, which runs code"
    return f"loading it reads the files in {where}"


def load_user_model(ref: str, weights: str | None = None, trust_pickle: bool = False, data: str | None = None,
                    max_samples: int = 5000) -> ModelSpec:
    """A ModelSpec for a user's model reference (see the module docstring); every problem is one
    PruneLabError line naming the file."""
    if not isinstance(max_samples, int) or max_samples < 1:
        raise PruneLabError(f"max_samples must be a positive integer, got {max_samples!r}")
    path, func = _split_ref(ref)
    if func is not None:
        if data is not None:
            raise PruneLabError(f"--data is for pickled models and Hugging Face folders; {ref} brings its own "
                                "loaders from its build function")
        return _from_factory(ref, path, func, weights, trust_pickle, max_samples)
    if not path.exists():
        raise PruneLabError(f"model {ref}: no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PruneLabError(f"model folder {path} has no config.json (not a Hugging Face model folder)")
        return _from_huggingface(ref, path, weights, trust_pickle, data, max_samples)
    if path.suffix == ".py":
        raise PruneLabError(f"{path}: name the function that builds the model, e.g. {path}:build")
    if path.suffix in PICKLE_SUFFIXES:
        return _from_pickle(ref, path, weights, trust_pickle, data, max_samples)
    if path.suffix == ".safetensors":
        raise PruneLabError(f"{path} holds weights only: give the architecture (a registry name or file.py:build) "
                            "and pass this file as --weights")
    raise PruneLabError(f"model {path}: expected file.py:function, a pickled model (.pt/.pth) or a Hugging Face "
                        "model folder")


def _finish(ref: str, where: str, model: nn.Module, example: torch.Tensor, split: Split | None, summary: str,
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


# --- file.py:function -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _on_sys_path(folder: Path):
    """folder first on sys.path for the duration (so a model file can import its neighbours)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_file(path: Path):
    """Import a .py file by path under a fresh, unique module name (kept in sys.modules: tracing, export and
    deep copies may look a class's module up)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    name = f"prunelab_user_{stem}_{digest}_{next(_imports)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PruneLabError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _on_sys_path(path.resolve().parent):
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PruneLabError(f"importing {path} failed: {_short(e)}") from None
    return module


def _from_factory(ref: str, path: Path, func: str, weights: str | None, trust_pickle: bool,
                  max_samples: int) -> ModelSpec:
    if not path.is_file():
        raise PruneLabError(f"model file {path} not found")
    if path.suffix != ".py":
        raise PruneLabError(f"model file {path} is not a .py file (expected file.py:{func})")
    module = _import_file(path)
    build = getattr(module, func, None)
    if not callable(build):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise PruneLabError(f"{path} has no function {func!r}" + (f" (it defines {', '.join(found[:8])})"
                                                                  if found else ""))
    where = f"{path}:{func}"
    try:
        with _on_sys_path(path.resolve().parent):
            made = build()
    except Exception as e:
        raise PruneLabError(f"{where}() raised {_short(e)}") from None
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
    summary = _summary(f"user model {where}", model, split, metric)
    spec = _finish(ref, where, model, example, split, summary, metric)
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
    return _finish(ref, where, spec.model, spec.example_input, spec.split, spec.summary or f"user model {where}",
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
            raise PruneLabError(f"the metric of {where} raised {_short(e)}") from None
        finally:
            model.train(was_training)
        values = value if isinstance(value, dict) else {label: value}
        try:
            return {str(k): float(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise PruneLabError(f"the metric of {where} must return a number or a dict of numbers, got "
                                f"{value!r:.100}") from None

    return metric


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
        raise PruneLabError(f"{where} raised {_short(e)}") from None
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


def _summary(what: str, model: nn.Module, split: Split | None, metric) -> str:
    params = sum(p.numel() for p in model.parameters())
    data = (f"{len(split.test_x):,} evaluation / {len(split.train_x):,} training examples" if split is not None
            else "no data")
    return f"{what}: {params:,} parameters; {data}" + ("; custom metric" if metric is not None else "")


# --- weights ---------------------------------------------------------------------------------------------

def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load on the CPU: weights-only unless trust_pickle; corrupt files and pickles that need code to
    load (without trust_pickle) are PruneLabErrors. Nothing in an untrusted file is executed; nothing is read
    before its declared size is checked (core.preflight)."""
    import pickle

    preflight.weights_file(path)
    try:
        if trust_pickle:
            with _on_sys_path(path.resolve().parent):  # classes a pickled model names often live beside it
                return torch.load(path, map_location="cpu", weights_only=False)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle and "Weights only load failed" in str(e):
            raise PruneLabError(f"{path} holds pickled objects, not just tensors: loading it runs code from the "
                                "file; pass --trust-pickle (trust_pickle=True) only if you trust its source") from None
        raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {_short(e)}") from None
    except Exception as e:
        raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {_short(e)}") from None


def read_state_dict(weights: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: .safetensors, or .pt/.pth holding a state dict (or a dict with one
    under "state_dict" or "model"; a pickled nn.Module's state dict with trust_pickle)."""
    path = Path(weights)
    if not path.is_file():
        raise PruneLabError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PruneLabError("reading .safetensors needs the safetensors package: .venv/bin/pip install "
                                "safetensors") from None
        preflight.weights_file(path)
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise PruneLabError(f"cannot read {path} (corrupt or truncated?): {_short(e)}") from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise PruneLabError(f"weights file {path}: expected .pt, .pth or .safetensors")
    obj = _torch_load(path, trust_pickle)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), nn.Module):
                obj = obj[key].state_dict()
                break
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PruneLabError(f"{path} holds {type(obj).__name__}, not a state dict (names to tensors, or a dict with "
                            "one under 'state_dict' or 'model')")
    return obj


def _some(keys: Iterable[str], n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_weights(model: nn.Module, weights: str | Path, trust_pickle: bool = False) -> None:
    """Load a weights file into model strictly; names and shapes that do not match are listed (up to 5)."""
    state = read_state_dict(weights, trust_pickle)
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        parts = ([f"missing {_some(missing)}"] if missing else []) + (
            [f"unexpected {_some(unexpected)}"] if unexpected else [])
        raise PruneLabError(f"weights {weights} do not fit the model: {'; '.join(parts)}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(own)
              if state[k].shape != own[k].shape]
    if shapes:
        raise PruneLabError(f"weights {weights} do not fit the model (file vs model shape): {_some(shapes)}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise PruneLabError(f"cannot load weights {weights}: {_short(e)}") from None


# --- pickled model, Hugging Face folder, .npz data --------------------------------------------------------

def _from_pickle(ref: str, path: Path, weights: str | None, trust_pickle: bool, data: str | None,
                 max_samples: int) -> ModelSpec:
    obj = _torch_load(path, trust_pickle)  # weights-only first: a state dict gets the message below
    if not isinstance(obj, nn.Module):
        raise PruneLabError(f"{path} holds a {type(obj).__name__}, not a pickled nn.Module; weights alone need "
                            "their architecture: give a registry name or file.py:build with --weights")
    if data is None:
        raise PruneLabError(f"a pickled model ({path}) needs data: --data FILE.npz with arrays x and y")
    split = load_npz(data, max_samples)
    if weights is not None:
        load_weights(obj, weights, trust_pickle)
    return _finish(ref, str(path), obj, split.test_x, split, _summary(f"pickled model {path}", obj, split, None))


HF_KINDS = {"ForImageClassification": "AutoModelForImageClassification",
            "ForSequenceClassification": "AutoModelForSequenceClassification"}


def _from_huggingface(ref: str, folder: Path, weights: str | None, trust_pickle: bool, data: str | None,
                      max_samples: int) -> ModelSpec:
    config = preflight.hf_config(folder / "config.json")  # sizes and counts bounded before transformers reads it
    archs = config.get("architectures")
    arch = next((a for a in archs or [] if isinstance(a, str) and a.endswith(tuple(HF_KINDS))), None)
    if arch is None:
        raise PruneLabError(f"{folder}: config.json names architectures {archs!r}; PruneLab loads image or sequence "
                            "classifiers (…ForImageClassification, …ForSequenceClassification)")
    if data is None:
        raise PruneLabError(f"a Hugging Face model folder ({folder}) needs data: --data FILE.npz with arrays x and y")
    split = load_npz(data, max_samples)
    try:
        import transformers
    except ImportError:
        raise PruneLabError("Hugging Face models need the transformers package: .venv/bin/pip install "
                            "transformers") from None
    auto = getattr(transformers, next(v for k, v in HF_KINDS.items() if arch.endswith(k)))
    for path in sorted(p for p in folder.iterdir() if p.suffix in preflight.WEIGHT_SUFFIXES and p.is_file()):
        preflight.weights_file(path)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # the CLI's stderr is for errors
    try:
        settings = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                                           trust_remote_code=False)
    except Exception as e:
        raise PruneLabError(f"cannot read {folder / 'config.json'}: {_short(e)}") from None
    preflight.model_params(auto, settings, folder / "config.json")
    try:
        model = auto.from_pretrained(str(folder), config=settings, local_files_only=True, trust_remote_code=False,
                                     use_safetensors=any(folder.glob("*.safetensors")))
    except Exception as e:
        raise PruneLabError(f"cannot load the Hugging Face model in {folder}: {_short(e)}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if weights is not None:
        load_weights(model, weights, trust_pickle)
    return _finish(ref, str(folder), model, split.test_x, split,
                   _summary(f"Hugging Face {arch} from {folder}", model, split, None))


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
        raise PruneLabError(f"cannot read {path} (corrupt, or holding pickled objects?): {_short(e)}") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing or ("x_train" in arrays) != ("y_train" in arrays):
        raise PruneLabError(f"data file {path} must hold arrays x and y, and optionally both x_train and y_train; "
                            f"it holds {_some(held, 8) or 'nothing'}")

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

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
`max_samples` examples each (the first ones: give an evaluation loader without shuffling) — core.user_data.

`weights=` loads a state dict into the model strictly: `.pt`/`.pth` read weights-only (a state dict, or a
dict holding one under "state_dict" or "model"; a pickled module only with trust_pickle) or `.safetensors`
— core.weights. A factory file is imported by core.user_code.

A model whose forward returns an object with `.logits`, a dict or a tuple is wrapped in LogitsOnly, which
returns the logits tensor; the original module is its child `model`, so layer names (the keys of a
config's ratios) read `model.<name>`. A custom metric is still given the original module.

The spec's name is the reference as given (configs carry it, `prunelab apply` loads it again, relative
paths from the same folder); its fingerprint refuses configs made for other weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import preflight
from core.data import Split
from core.errors import PruneLabError
from core.spec import ModelSpec, fingerprint
from core.user_code import import_file, on_sys_path, one_line
from core.user_data import load_npz, materialise
from core.weights import PICKLE_SUFFIXES, load_weights, torch_load

DICT_KEYS = ("model", "example_input", "eval_loader")  # required keys of a factory's dict
OPTIONAL_KEYS = ("train_loader", "metric")


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

def _from_factory(ref: str, path: Path, func: str, weights: str | None, trust_pickle: bool,
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


def _summary(what: str, model: nn.Module, split: Split | None, metric) -> str:
    params = sum(p.numel() for p in model.parameters())
    data = (f"{len(split.test_x):,} evaluation / {len(split.train_x):,} training examples" if split is not None
            else "no data")
    return f"{what}: {params:,} parameters; {data}" + ("; custom metric" if metric is not None else "")


# --- pickled model, Hugging Face folder, .npz data --------------------------------------------------------

def _from_pickle(ref: str, path: Path, weights: str | None, trust_pickle: bool, data: str | None,
                 max_samples: int) -> ModelSpec:
    obj = torch_load(path, trust_pickle)  # weights-only first: a state dict gets the message below
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
        raise PruneLabError(f"cannot read {folder / 'config.json'}: {one_line(e)}") from None
    preflight.model_params(auto, settings, folder / "config.json")
    try:
        model = auto.from_pretrained(str(folder), config=settings, local_files_only=True, trust_remote_code=False,
                                     use_safetensors=any(folder.glob("*.safetensors")))
    except Exception as e:
        raise PruneLabError(f"cannot load the Hugging Face model in {folder}: {one_line(e)}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if weights is not None:
        load_weights(model, weights, trust_pickle)
    return _finish(ref, str(folder), model, split.test_x, split,
                   _summary(f"Hugging Face {arch} from {folder}", model, split, None))



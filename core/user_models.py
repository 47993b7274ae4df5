"""Models users bring without editing PruneLab: a Python factory, a pickled module or a Hugging Face folder.

`core.models.load(name, ...)` sends every name that is not a registry name here. A reference is one of

- `path/to/file.py:build` — the file is imported by path (under a unique module name; its folder is on
  sys.path only while it is imported and `build()` runs) and `build()` is called. It returns a ModelSpec
  or a dict: `model` (nn.Module), `example_input` (a tensor; when its first dimension is not 1 only
  `example_input[:1]` is kept: PruneLab traces and exports with a batch of one), `eval_loader` (an
  iterable of (inputs, labels) batches), optionally `train_loader` (the same; without it fine-tuning and
  sensitivity sweeps are unavailable) and `metric(model, eval_loader) -> float | dict` (reported beside
  accuracy; a float is named after the function, e.g. `def f1(...)` gives "f1"). With `data=` (`--data`) the
  dict holds no loaders: the data is read from there (images made to fit example_input's channels and size)
  and a metric is given its evaluation part in batches;
- `path/to/model.pt` — a whole pickled nn.Module: unpickling runs code, so it needs `trust_pickle=True`
  (`--trust-pickle`), and data from `data=FILE.npz`;
- `path/to/folder` holding a Hugging Face `config.json` (an image or sequence classifier): loaded with
  transformers from local files only, never with remote code; data from `data=FILE.npz`.

An .npz data file holds `x` (inputs) and `y` (integer labels), optionally `x_train`/`y_train` (for
fine-tuning); it is read without pickles. Loaders and arrays are materialised on the CPU, at most
`max_samples` examples each (the first ones: give an evaluation loader without shuffling) — core.user_data.

`weights=` loads a state dict into the model strictly: `.pt`/`.pth` read weights-only (a state dict, or a
dict holding one under "state_dict" or "model"; a pickled module only with trust_pickle) or `.safetensors`
— core.weights. Each kind of reference has its loader in core.loaders (factory, pickled, huggingface).

A model whose forward returns an object with `.logits`, a dict or a tuple is wrapped in LogitsOnly
(core.loaders.user_spec), which returns the logits tensor; the original module is its child `model`, so
layer names (the keys of a config's ratios) read `model.<name>`. A custom metric is still given the
original module.

The spec's name is the reference as given (configs carry it, `prunelab apply` loads it again, relative
paths from the same folder); its fingerprint refuses configs made for other weights.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import PruneLabError
from core.loaders.factory import from_factory
from core.loaders.huggingface import from_huggingface
from core.loaders.pickled import from_pickle
from core.spec import ModelSpec
from core.weights import PICKLE_SUFFIXES


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
        return from_factory(ref, path, func, weights, trust_pickle, data, max_samples)
    if not path.exists():
        raise PruneLabError(f"model {ref}: no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PruneLabError(f"model folder {path} has no config.json (not a Hugging Face model folder)")
        return from_huggingface(ref, path, weights, trust_pickle, data, max_samples)
    if path.suffix == ".py":
        raise PruneLabError(f"{path}: name the function that builds the model, e.g. {path}:build")
    if path.suffix in PICKLE_SUFFIXES:
        return from_pickle(ref, path, weights, trust_pickle, data, max_samples)
    if path.suffix == ".safetensors":
        raise PruneLabError(f"{path} holds weights only: give the architecture (a registry name or file.py:build) "
                            "and pass this file as --weights")
    raise PruneLabError(f"model {path}: expected file.py:function, a pickled model (.pt/.pth) or a Hugging Face "
                        "model folder")



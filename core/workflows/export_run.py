"""A recorded run's pruned model in each format the user may take away — what `prunelab export` and the Export
page both hand out: model.onnx and model.safetensors as the run wrote them, and a `.pt2` made from them on demand
(core.export_formats)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from core.errors import PruneLabError
from core.export_formats import load_pruned, pt2_bytes
from core.export_hf import export_hf
from core.run_folder import WEIGHTS_FILE
from core.store import Store

FORMATS = ("onnx", "pt2", "safetensors", "hf")  # the choices of `prunelab export --format`
FILE_NAMES = {"onnx": "model.onnx", "pt2": "model.pt2", "safetensors": WEIGHTS_FILE, "hf": "model-hf"}  # hf: a folder


def find_run(text: str) -> Path:
    """A run's folder, given as the folder itself or as its id in the experiment store (as `experiments show`
    takes it); one line when it is neither."""
    path = Path(text)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PruneLabError(f"{text} is not a run folder (it has no config.json)")
        return path
    try:
        folder = Store().get(text).folder
    except PruneLabError:
        raise PruneLabError(f"{text} is neither a run folder nor a recorded experiment (see: prunelab experiments "
                            "list)") from None
    if folder is None:
        raise PruneLabError(f"experiment {text} has no files (a later run replaced them)")
    return folder


def run_file(folder: Path, fmt: str) -> Path:
    """The run's model.onnx or model.safetensors; one line when the run has none, saying why."""
    path = Path(folder) / FILE_NAMES[fmt]
    if path.is_file():
        return path
    if fmt == "safetensors":
        raise PruneLabError(f"{folder} has no {WEIGHTS_FILE} (a run recorded before runs kept their pruned "
                            f"weights); replay it to get them: prunelab apply {Path(folder) / 'config.json'} --out DIR")
    raise PruneLabError(f"{folder} has no {FILE_NAMES[fmt]} (its ONNX export failed, metrics.json says why, or the "
                        "file was removed)")


def run_pt2(folder: Path, model: nn.Module, example_input: torch.Tensor) -> bytes:
    """The .pt2 of a run: its module rebuilt (load_pruned) from the unpruned `model`, then exported."""
    weights = run_file(folder, "safetensors")
    return pt2_bytes(load_pruned(model, Path(folder) / "config.json", weights, example_input), example_input)


def run_hf(folder: Path, model: nn.Module, example_input: torch.Tensor, out: Path, source: Path | None) -> float:
    """A run as a Hugging Face folder `out` (core.export_hf): its module rebuilt from the unpruned `model`, written
    with the tokenizer/processor files of `source` (the model's own folder), reloaded and compared; returns the
    largest logit difference of the reloaded folder from the pruned model."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PruneLabError(f"{out} already exists and is not an empty folder; choose another --out")
    weights = run_file(folder, "safetensors")
    pruned = load_pruned(model, Path(folder) / "config.json", weights, example_input)
    return export_hf(pruned, out, example_input, source)


def model_folder(reference: str) -> Path | None:
    """The model's own folder when it was loaded from a Hugging Face folder (its tokenizer/processor files go
    along with an hf export), else None."""
    path = Path(reference)
    return path if path.is_dir() else None


def run_hf_zip(folder: Path, model: nn.Module, example_input: torch.Tensor, source: Path | None) -> bytes:
    """A run as a Hugging Face folder (run_hf, checked by reloading it) zipped under FILE_NAMES["hf"]/: what the
    Export page hands out."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / FILE_NAMES["hf"]
        run_hf(folder, model, example_input, out, source)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(tmp).as_posix())
        return buffer.getvalue()


def how_to_load(fmt: str, base: str = "build()", auto: str | None = None) -> str:
    """One line of Python that loads a run's file of this format and runs it on a batch x; `base` is the
    expression for the unpruned module (the user's own factory, or a registry model) that load_pruned rebuilds
    the pruned one from; `auto`: the transformers Auto class of an hf folder (core.export_hf.auto_class)."""
    hf_class = auto or "AutoModelForSequenceClassification"
    return {"onnx": 'onnxruntime.InferenceSession("model.onnx").run(None, {"input": x.numpy()})',
            "pt2": 'torch.export.load("model.pt2").module()(x)',
            "safetensors": f'load_pruned({base}, PruneConfig.load("config.json"), "model.safetensors")(x)',
            "hf": f'{hf_class}.from_pretrained("model-hf")(x).logits' + ("" if auto else "  (or the model's Auto "
                                                                                      "class)")}[fmt]

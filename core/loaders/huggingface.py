"""A local Hugging Face model folder (config.json naming an image or sequence classifier): loaded with
transformers from local files only, never with remote code; sizes bounded first (core.preflight); data from
an .npz file."""

from __future__ import annotations

from pathlib import Path

from core import preflight
from core.errors import PruneLabError
from core.loaders.user_spec import finish, summary_line
from core.spec import ModelSpec
from core.user_code import one_line
from core.user_data import load_npz
from core.weights import load_weights

HF_KINDS = {"ForImageClassification": "AutoModelForImageClassification",
            "ForSequenceClassification": "AutoModelForSequenceClassification"}


def from_huggingface(ref: str, folder: Path, weights: str | None, trust_pickle: bool, data: str | None,
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
    return finish(ref, str(folder), model, split.test_x, split,
                   summary_line(f"Hugging Face {arch} from {folder}", model, split, None))

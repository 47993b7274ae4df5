"""A local Hugging Face model folder (config.json naming an image or sequence classifier): loaded with
transformers from local files only, never with remote code; sizes bounded first (core.preflight); data from
what core.user_data.load_data reads (.npz, CSV/JSONL through the folder's tokenizer, a `datasets` folder, an
image folder resized and normalised as the folder's processor config says)."""

from __future__ import annotations

from pathlib import Path

from core import preflight
from core.errors import PruneLabError
from core.loaders.data_text import HF_EXTRA
from core.loaders.user_spec import finish, summary_line
from core.spec import ModelSpec
from core.user_code import one_line
from core.user_data import label_note, load_reference
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
        raise PruneLabError(f"a Hugging Face model folder ({folder}) needs data: --data with an .npz (arrays x, y), "
                            "a .csv/.jsonl file, a datasets folder or an image folder")
    split = load_reference(data, model_folder=folder, max_samples=max_samples)
    try:
        import transformers
    except ImportError:
        raise PruneLabError(f"Hugging Face models need the transformers package: {HF_EXTRA}") from None
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
    summary = summary_line(f"Hugging Face {arch} from {folder}", model, split, None)
    return finish(ref, str(folder), model, split.test_x, split, "; ".join(filter(None, (summary, label_note(split)))))

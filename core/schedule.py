"""Schedules: when pruning happens relative to fine-tuning, each recording a trajectory of measurements.

- oneshot: prune to the final ratios, then spend the whole fine-tuning budget;
- iterative: `steps` rounds, each pruning a little more (the final ratios times the schedule's curve at
  k/steps) and fine-tuning for its share of the budget — the optimiser steps of `epochs` epochs split
  evenly across rounds, or with `last_round` of them after the last cut (Schedule.split), so every schedule
  trains for the same number of steps;
- dynamic: gradual magnitude pruning *during* fine-tuning (Zhu & Gupta 2017): masks start empty and are
  recomputed from the current weights every `update_every` optimiser steps, the sparsity following the
  schedule curve (cubic by default) until 75% of the steps, the last quarter fine-tuning at the final sparsity.
Options: distillation from the unpruned model (core.finetune.Teacher) and lottery-ticket rewind
(surviving weights reset to their initial values after each pruning step, then trained again).
Structural methods convert "ratio of the original unit" into "ratio of what is left" at every round.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn.utils import prune

from core.config import PruneConfig
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.finetune import Recipe, Teacher, fit
from core.metrics import static_metrics
from core.models import initial_state
from core.prune import calibration, check_config_matches, prune_step
from core.prune.unstructured import refresh_masked
from core.spec import ModelSpec, fingerprint, require_data

StageProgress = Callable[[str, int, int], None]
PRUNE_UNTIL = 0.75  # dynamic: share of the optimiser steps over which sparsity grows


@dataclass
class Trained:
    """A pruned and fine-tuned model, what was removed, the loss per (part) epoch, and the trajectory:
    one point per pruning step and per fine-tuning round (params, FLOPs, non-zeros, test accuracy)."""

    model: nn.Module
    removed: dict[str, int]
    losses: list[float] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)


def train(spec: ModelSpec, config: PruneConfig, progress: StageProgress | None = None) -> Trained:
    """Prune a copy of spec.model and fine-tune it following config.schedule (see module docstring)."""
    check_config_matches(spec, config)
    if config.finetune.epochs:
        require_data(spec, "fine-tuning")
    say = progress or (lambda stage, done, total: None)
    if config.then:
        return _stages(spec, config, say)
    if config.schedule.kind == "dynamic":
        return _dynamic(spec, config, say)
    return _rounds(spec, config, say)


def _stages(spec: ModelSpec, config: PruneConfig, say: StageProgress) -> Trained:
    """A recipe: each stage pruned (and fine-tuned, as it says) on the model the stage before left. The trajectory
    runs on across the stages, each point marked with its stage (1, 2, ...); what was removed is summed per unit."""
    stages = config.stages()
    current, removed, losses, trajectory = spec, {}, [], []
    for k, stage in enumerate(stages, 1):
        label = f"stage {k}/{len(stages)} ({stage.method})"
        done = _rounds_or_dynamic(current, stage, lambda what, d, t, label=label: say(f"{label}: {what}", d, t))
        points = done.trajectory if k == 1 else done.trajectory[1:]  # a later stage's baseline is the last point
        step = trajectory[-1]["step"] if trajectory else 0
        trajectory += [{**p, "stage": k, "step": p["step"] + (step if k > 1 else 0)} for p in points]
        for unit, n in done.removed.items():
            removed[unit] = removed.get(unit, 0) + n
        losses += done.losses
        refresh_masked(done.model)  # trained masked weights are recomputed outside autograd: the next stage copies it
        current = replace(current, model=done.model, fingerprint=fingerprint(done.model))
    return Trained(current.model, removed, losses, trajectory)


def _rounds_or_dynamic(spec: ModelSpec, config: PruneConfig, say: StageProgress) -> Trained:
    if config.finetune.epochs:
        require_data(spec, "fine-tuning")
    return _dynamic(spec, config, say) if config.schedule.kind == "dynamic" else _rounds(spec, config, say)


def _point(model: nn.Module, spec: ModelSpec, step: int, fraction: float, phase: str) -> dict:
    point = {"step": step, "fraction": round(fraction, 6), "phase": phase,
             **static_metrics(model, spec.example_input)}
    point["accuracy"] = evaluate(model, spec.split.test_x, spec.split.test_y)["accuracy"] if spec.has_data else None
    if spec.metric is not None:
        point.update(spec.metric(model))
    return point


def _recipe(config: PruneConfig) -> Recipe:
    ft = config.finetune
    return Recipe(epochs=ft.epochs, lr=ft.lr, batch_size=ft.batch_size, optimizer=ft.optimizer, batchnorm=ft.batchnorm)


def _budget(spec: ModelSpec, config: PruneConfig) -> int:
    """Optimiser steps of the whole fine-tuning budget."""
    if not config.finetune.epochs:
        return 0
    return -(-len(spec.split.train_x) // config.finetune.batch_size) * config.finetune.epochs


def _teacher(spec: ModelSpec, config: PruneConfig) -> Teacher | None:
    ft = config.finetune
    return Teacher(spec.model, ft.temperature, ft.alpha) if ft.distill else None


def _targets(spec: ModelSpec, config: PruneConfig, model: nn.Module, fraction: float,
             done: list[str]) -> tuple[dict[str, float], list[str]]:
    """This round's ratios (relative to what the working model has left) or blocks to remove."""
    return config.technique.step_targets(spec, config, model, fraction, done)


def _rounds(spec: ModelSpec, config: PruneConfig, say: StageProgress) -> Trained:
    schedule = config.schedule
    shares, teacher = schedule.split(_budget(spec, config)), _teacher(spec, config)  # optimiser steps per round
    rounds = len(shares)
    calib = calibration(spec, config.calibration_samples, config.seed)
    model, removed, losses = copy.deepcopy(spec.model), {}, []
    trajectory = [_point(model, spec, 0, 0.0, "baseline")]
    initial = initial_state(spec) if config.finetune.rewind else None
    for k in range(1, rounds + 1):
        fraction = schedule.fraction(k / rounds) if rounds > 1 else 1.0
        where = f" (round {k}/{rounds})" if rounds > 1 else ""
        say(f"pruning{where}", k - 1, rounds)
        ratios, blocks = _targets(spec, config, model, fraction, list(removed))
        repairing = lambda done, total, layer, where=where: say(f"repairing{where}", done, total)  # noqa: E731
        for unit, n in prune_step(model, spec.example_input, config, ratios, calib, blocks, repairing).items():
            removed[unit] = config.technique.removed_count(removed.get(unit, 0), n)
        trajectory.append(_point(model, spec, k, fraction, "pruned"))
        if initial is not None:
            rewind(model, initial)
        steps = shares[k - 1]
        if steps:
            losses += fit(model, spec.split.train_x, spec.split.train_y, _recipe(config), seed=config.seed + k - 1,
                          steps=steps, teacher=teacher,
                          progress=lambda d, t, info, where=where: say(f"fine-tuning{where}", d, t))
            trajectory.append(_point(model, spec, k, fraction, "fine-tuned"))
    return Trained(model.eval(), removed, losses, trajectory)


@torch.no_grad()
def rewind(model: nn.Module, initial: dict[str, torch.Tensor]) -> None:
    """Lottery-ticket rewind: every parameter and buffer back to its initial value, masks kept (a masked
    weight's `weight_orig` takes the initial `weight`), so pruned weights stay zero."""
    for key, value in model.state_dict().items():
        if key.endswith("_mask"):
            continue
        source = key[: -len("_orig")] if key.endswith("_orig") else key
        if source not in initial or initial[source].shape != value.shape:
            raise PruneLabError(f"cannot rewind {key}: the initial weights do not have it in this shape")
        value.copy_(initial[source])
    refresh_masked(model)  # the masked `weight` attributes are recomputed at the next forward; do it now


def _install_empty_masks(model: nn.Module, config: PruneConfig) -> dict[str, nn.Module]:
    """Masks of ones on every layer the config prunes (updated in place later: the optimiser keeps
    training the same weight_orig parameters)."""
    modules = dict(model.named_modules())
    layers = {n: modules[n] for n, r in config.ratios.items() if r > 0}
    for module in layers.values():
        prune.custom_from_mask(module, "weight", torch.ones_like(module.weight))
    return layers


def _dynamic(spec: ModelSpec, config: PruneConfig, say: StageProgress) -> Trained:
    """Gradual magnitude pruning during fine-tuning; masks installed empty and updated in place."""
    model = copy.deepcopy(spec.model)
    layers = _install_empty_masks(model, config)
    trajectory = [_point(model, spec, 0, 0.0, "baseline")]
    initial = initial_state(spec) if config.finetune.rewind else None
    total, every = _budget(spec, config), config.schedule.update_every
    end = max(1, int(total * PRUNE_UNTIL))

    def update(step: int, _total: int) -> None:
        if step % every and step != end or step > end:
            return
        fraction = config.schedule.fraction(step / end)
        _update_masks(layers, config, fraction)
        if initial is not None:
            rewind(model, initial)
        trajectory.append(_point(model, spec, step, fraction, "pruned"))
        model.train()

    losses = fit(model, spec.split.train_x, spec.split.train_y, _recipe(config), seed=config.seed, steps=total,
                 teacher=_teacher(spec, config), on_step=update,
                 progress=lambda d, t, info: say("fine-tuning with gradual pruning", d, t))
    trajectory.append(_point(model, spec, total, 1.0, "fine-tuned"))
    removed = {n: int((m.weight_mask == 0).sum()) for n, m in layers.items()}
    return Trained(model.eval(), removed, losses, trajectory)


@torch.no_grad()
def _update_masks(layers: dict[str, nn.Module], config: PruneConfig, fraction: float,
                  ) -> None:
    """Recompute each layer's mask at ratio * fraction from the current masked weights' magnitudes;
    weights already pruned score lowest, so sparsity only grows."""
    for name, module in layers.items():
        current = (module.weight_orig * module.weight_mask).abs()
        scores_now = torch.where(module.weight_mask == 0, -torch.inf, current)
        ratio = config.ratios[name] * fraction
        mask = config.technique.dynamic_mask(scores_now, ratio, config.pattern)
        module.weight_mask.copy_(mask.to(module.weight_mask.dtype))
        module.weight = module.weight_orig * module.weight_mask  # what forward computes next: counts read it now

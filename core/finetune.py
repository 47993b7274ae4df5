"""Training loops: the brief fine-tune after pruning (masks respected), BatchNorm re-estimation, and the
full training the sample models were made with. One loop serves all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.data import batches, calibration_subset
from core.errors import PruneLabError
from core.evaluate import task_loss

# progress(done_steps, total_steps, info) — info carries e.g. {"epoch": 1, "loss": 0.12}
Progress = Callable[[int, int, dict], None]
# on_step(done_steps, total_steps): called after every optimiser step (e.g. to update pruning masks)
StepHook = Callable[[int, int], None]
RECALIBRATION_SAMPLES = 1024  # training inputs BatchNorm statistics are re-estimated on after a "recalibrate" fit


@dataclass(frozen=True)
class Teacher:
    """Knowledge distillation (Hinton et al. 2015): the loss adds alpha * T^2 * KL(teacher || student) on
    temperature-T softmaxes to (1 - alpha) * cross-entropy on the labels. The teacher is only read."""

    model: nn.Module
    temperature: float = 4.0
    alpha: float = 0.5

    def loss(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.model(x)
        t, classes = self.temperature, logits.shape[-1]
        # every prediction (an LM's every position) one row, so batchmean averages over predictions
        student, teacher = logits.reshape(-1, classes) / t, target.reshape(-1, classes) / t
        soft = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True,
                        reduction="batchmean") * t * t
        return self.alpha * soft + (1 - self.alpha) * task_loss(logits, y)


@dataclass(frozen=True)
class Recipe:
    """How to train. The defaults are the fine-tune recipe: gentle enough that one epoch on an unpruned
    model leaves its accuracy where it was, strong enough to recover from pruning.

    A naive Adam lr=1e-3 epoch cost the unpruned mnist-resnet 2-4 points; SGD with momentum, a small
    peak learning rate, warm-up and cosine decay to zero does not (see the closing note of issue 2).
    """

    epochs: int = 1
    lr: float = 0.01  # peak learning rate, reached after warm-up
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, Nesterov) or "adamw"
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1  # share of steps spent ramping the learning rate up from zero
    augment: bool = False  # random shifts of up to 2 pixels (28x28 images only)
    # BatchNorm statistics: "train" follow the batches (EMA); "frozen" kept as they were (BN layers in eval mode);
    # "recalibrate" follow the batches, then are re-estimated on training inputs at the end (core.recipes says why)
    batchnorm: str = "train"
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decays (GPT-style training uses (0.9, 0.95))
    clip_norm: float | None = None  # clip the gradient's global L2 norm to this before each step (None: never)


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, betas=recipe.betas)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero, as a multiple of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + torch.cos(torch.tensor(progress * torch.pi)).item())


def random_shift(x: torch.Tensor, max_pixels: float = 2.0) -> torch.Tensor:
    """Translate each image by up to max_pixels in x and y (bilinear, borders repeated)."""
    b, _, h, _ = x.shape
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(b, 2) * 2 - 1) * (2 * max_pixels / h)  # normalised coords span 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    steps: int | None = None,
    teacher: Teacher | None = None,
    on_step: StepHook | None = None,
) -> list[float]:
    """Train model in place on (x, y) with recipe; returns the mean training loss of each epoch (or part
    epoch). `steps` overrides the length: that many optimiser steps (a share of an epoch, or several),
    the learning-rate schedule stretched over them — how a schedule splits its epoch budget into rounds.

    Pruning masks installed by torch.nn.utils.prune stay in force: the forward pass multiplies the
    trainable weight_orig by the fixed mask, so pruned weights stay zero.
    """
    total = steps if steps is not None else -(-len(x) // recipe.batch_size) * recipe.epochs
    with torch.random.fork_rng(devices=[]):  # seed augmentation/dropout without touching the caller's RNG
        torch.manual_seed(seed)
        losses = _fit(model, x, y, recipe, seed, total, progress, teacher, on_step)
    if recipe.batchnorm == "recalibrate":
        recalibrate_batchnorm(model, calibration_subset(x, RECALIBRATION_SAMPLES, seed))
    return losses


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int, total: int,
         progress: Progress | None, teacher: Teacher | None, on_step: StepHook | None) -> list[float]:
    opt = _optimizer(model, recipe)
    warmup = int(total * recipe.warmup_fraction)
    step, epoch, epoch_losses = 0, 0, []
    while step < total:
        running, seen = 0.0, 0
        for xb, yb in batches(x, y, recipe.batch_size, shuffle=True, seed=seed * 1000 + epoch):
            if step == total:
                break
            _train_mode(model, recipe)  # every step: a step hook may have evaluated (and so left eval mode)
            for group in opt.param_groups:
                group["lr"] = recipe.lr * _lr_factor(step, total, warmup)
            if recipe.augment and xb.dim() == 4:
                xb = random_shift(xb)
            logits = model(xb)
            loss = teacher.loss(logits, xb, yb) if teacher else task_loss(logits, yb)  # an LM: next-token CE
            _check_finite(loss, step, recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
            opt.step()
            running, seen, step = running + loss.item() * len(xb), seen + len(xb), step + 1
            if on_step:
                on_step(step, total)
            if progress:
                progress(step, total, {"epoch": epoch + 1, "loss": loss.item()})
        epoch_losses.append(running / max(seen, 1))
        epoch += 1
    model.eval()
    return epoch_losses


def _train_mode(model: nn.Module, recipe: Recipe) -> None:
    """Training mode, BatchNorm layers excepted when the recipe freezes them: their running statistics stay those
    the model was trained (or recalibrated) with, while their scale and shift still learn."""
    model.train()
    if recipe.batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _check_finite(loss: torch.Tensor, step: int, recipe: Recipe) -> None:
    """Stop a fine-tune that diverged: a NaN or infinite loss means the weights already are or soon will be,
    and a model of NaN weights must fail the run, not be measured and recorded as done."""
    if not torch.isfinite(loss):
        raise PruneLabError(f"fine-tuning diverged: the loss became {loss.item()} at step {step + 1} (peak learning "
                            f"rate {recipe.lr:g}); try a lower learning rate")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running mean/var on inputs x; returns how many BN layers were reset.

    After channels are cut, the statistics the network was trained with no longer describe the
    activations it now produces; without this step a one-shot channel-pruned CNN falls to chance.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # None = cumulative average over all batches seen, not an EMA
    model.train()
    for xb, _ in batches(x, torch.zeros(len(x)), batch_size):
        model(xb)
    for bn, m in zip(bns, saved, strict=True):
        bn.momentum = m
    model.eval()
    return len(bns)

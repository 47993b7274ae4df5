"""Task metrics: accuracy and mean cross-entropy over a labelled set, and perplexity for language models.

One loss for every task (task_loss): class logits (N, C) against labels (N,), or a language model's next-token
logits (N, T, V) against targets (N, T), where every position is one prediction. Evaluation, fine-tuning and
gradient-based importance all use it, so an LM is scored, trained and ranked on the same next-token loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.data import batches


def task_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over every prediction: one per example for a classifier, one per position (the next token)
    for a language model."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)


def predicted(logits: torch.Tensor) -> torch.Tensor:
    """The most likely class (or next token) of every prediction: logits' last axis is the classes."""
    return logits.argmax(-1)


def is_sequence(targets: torch.Tensor) -> bool:
    """Whether targets are per-position (N, T) next tokens, i.e. the model is a language model."""
    return targets.dim() > 1


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 100) -> dict[str, float]:
    """Accuracy (0..1) and mean cross-entropy of model on (x, y), in eval mode, over every prediction. For a
    language model (targets (N, T)) accuracy is next-token accuracy, loss the mean next-token cross-entropy
    (nats), and perplexity = exp(loss) is added: the one place it is computed.

    Batches of 100 were the fastest on this machine's CPU for the sample models (2-6x faster than 500,
    whose activations no longer fit in cache)."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for xb, yb in batches(x, y, batch_size):
        logits = model(xb)
        loss_sum += task_loss(logits, yb, reduction="sum").item()
        correct += (predicted(logits) == yb).sum().item()
    model.train(was_training)
    count = y.numel()
    metrics = {"accuracy": correct / count, "loss": loss_sum / count}
    if is_sequence(y):
        metrics["perplexity"] = perplexity(metrics["loss"])
    return metrics


def perplexity(mean_loss: float) -> float:
    """exp(mean next-token cross-entropy in nats); inf if the loss overflows it."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf

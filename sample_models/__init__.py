"""Bundled sample models: architectures, trained weights (weights/*.pt) and the script that trains them;
and a zoo of reference architectures at 224x224 with random weights, for size and latency work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sample_models import tiny_lm_data
from sample_models.architectures import DigitsMLP, MnistMobileNet, MnistResNet, MnistViT
from sample_models.tiny_lm import TinyLM

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Sample:
    """A bundled model: how to build it, which data it learns, and how it was trained."""

    name: str
    build: Callable[[], nn.Module]
    dataset: str  # a name known to core.data.load_split
    input_shape: tuple[int, ...]  # one example, without the batch dimension
    min_accuracy: float  # the test accuracy the committed weights must reach (next-token accuracy for an LM)
    epochs: int  # training recipe (AdamW, one-cycle schedule, random shifts for images)
    lr: float
    summary: str
    # what sample_models.train fits on when not the split's training set (the LM: overlapping windows)
    training_data: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None
    weights_dtype: torch.dtype = torch.float32  # as committed; loaded into the fp32 model either way
    # core.finetune.Recipe fields that differ from the image models' training (the LM: GPT-style AdamW, clipping)
    recipe: tuple[tuple[str, object], ...] = ()

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.pt"


TINY_LM = Sample("tiny-lm", TinyLM, "pydoc-topics", (tiny_lm_data.CONTEXT,), 0.55, 2, 3e-3,
                 "GPT-style character language model, 4 blocks x 4 heads, dim 128, context 128, trained on "
                 "Python's reference docs; measured by perplexity", tiny_lm_data.training_windows, torch.float16,
                 (("batch_size", 32), ("betas", (0.9, 0.95)), ("clip_norm", 1.0)))
SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("mnist-resnet", MnistResNet, "mnist", (1, 28, 28), 0.95, 15, 3e-3,
               "ResNet-style CNN, 3 stages (16/32/64 channels), BatchNorm, residual adds"),
        Sample("mnist-mobilenet", MnistMobileNet, "mnist", (1, 28, 28), 0.93, 20, 3e-3,
               "MobileNetV2-style inverted residuals with depthwise convolutions"),
        Sample("digits-mlp", DigitsMLP, "digits", (64,), 0.95, 40, 3e-3,
               "MLP 64-128-64-10 on scikit-learn's 8x8 digits"),
        Sample("mnist-vit", MnistViT, "mnist", (1, 28, 28), 0.90, 40, 2e-3,
               "Vision transformer, 4 blocks x 4 heads, hand-written q/k/v attention"),
        TINY_LM,
    )
}


@dataclass(frozen=True)
class Reference:
    """A reference architecture without trained weights or data: built from a fixed seed, so its weights
    (and fingerprint) are the same on every machine. Size, FLOPs and latency are real; accuracy is not
    available, and fine-tuning and sensitivity sweeps need data it does not have."""

    name: str
    builder: str  # a function of sample_models.zoo
    input_shape: tuple[int, ...]
    summary: str
    seed: int = 0

    def build(self) -> nn.Module:
        from sample_models import zoo

        return getattr(zoo, self.builder)()


_RGB = (3, 224, 224)
ZOO: dict[str, Reference] = {
    r.name: r
    for r in (
        Reference("resnet18", "resnet18", _RGB, "ResNet-18 (torchvision layout), 224x224, random weights"),
        Reference("resnet50", "resnet50", _RGB, "ResNet-50 v1.5 (torchvision layout), 224x224, random weights"),
        Reference("mobilenetv2", "mobilenetv2", _RGB, "MobileNetV2 1.0 (torchvision layout), 224x224, random weights"),
        Reference("vit-s16", "vit_s16", _RGB, "ViT-S/16 (12 blocks x 6 heads, dim 384), 224x224, random weights"),
    )
}

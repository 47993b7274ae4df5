"""Bundled sample models: architectures, trained weights (weights/*.pt) and the script that trains them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sample_models.architectures import DigitsMLP, MnistMobileNet, MnistResNet, MnistViT

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Sample:
    """A bundled model: how to build it, which data it learns, and how it was trained."""

    name: str
    build: Callable[[], nn.Module]
    dataset: str  # a name known to core.data.load_split
    input_shape: tuple[int, ...]  # one example, without the batch dimension
    min_accuracy: float  # the test accuracy the committed weights must reach
    epochs: int  # training recipe (AdamW, one-cycle schedule, random shifts for images)
    lr: float
    summary: str

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.pt"


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
    )
}

"""The reference zoo matches the published architectures: parameter and MAC counts within 1% of the
published figures, 1000 logits for one 224x224 RGB image, and the classifier where the engine looks for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.metrics import count_params, total_flops
from sample_models import zoo

# builder -> (parameters, multiply-accumulates at 224x224, classifier attribute).
# ResNets and MobileNetV2: torchvision's weight metadata ("num_params" and "_ops" in GMACs, shown as "GFLOPS"
# on the torchvision model docs pages) for ResNet18_Weights, ResNet50_Weights.IMAGENET1K_V1 and
# MobileNet_V2_Weights.IMAGENET1K_V1. ViT-S/16: timm's vit_small_patch16_224 (22,050,664 parameters as built
# by timm; 4.6 GMACs on its model card).
PUBLISHED = {
    "resnet18": (11_689_512, 1.814e9, "fc"),
    "resnet50": (25_557_032, 4.089e9, "fc"),
    "mobilenetv2": (3_504_872, 0.301e9, "classifier"),
    "vit_s16": (22_050_664, 4.6e9, "head"),
}
TOLERANCE = 0.01
IMAGE = (1, 3, 224, 224)


@pytest.fixture(scope="module", params=list(PUBLISHED))
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    """(builder name, model in eval mode), built once per module from a fixed seed."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return request.param, getattr(zoo, request.param)().eval()


def test_parameter_count_matches_published(built):
    name, model = built
    params = count_params(model)
    print(f"{name}: {params:,} parameters")
    assert params == pytest.approx(PUBLISHED[name][0], rel=TOLERANCE)


def test_macs_match_published(built):
    name, model = built
    # total_flops counts with torch's FlopCounterMode: 2 FLOPs per multiply-add of convs and matmuls (bias,
    # norm, activation and pooling are not counted), so MACs are half its figure.
    macs = total_flops(model, torch.zeros(IMAGE)) / 2
    print(f"{name}: {macs / 1e9:.4f} GMACs")
    assert macs == pytest.approx(PUBLISHED[name][1], rel=TOLERANCE)


def test_one_image_gives_1000_logits_from_the_named_classifier(built):
    name, model = built
    with torch.no_grad():
        out = model(torch.zeros(IMAGE))
    assert out.shape == (1, 1000)
    head = getattr(model, PUBLISHED[name][2])
    assert type(head) is nn.Linear and head.out_features == 1000

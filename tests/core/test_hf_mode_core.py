"""What the dashboard's HF-compatible mode reads from core.export_hf: which models it applies to, the layer stack's
units grouped by kind (one slider each), and the one-line reason a cut cannot be a Hugging Face folder — never a
crash of the model class."""

from __future__ import annotations

from core.config import PruneConfig
from core.estimate import build_cost_model
from core.export_hf import hf_refusal, is_hf, layer_kinds, stack_prefix
from sample_models.hf_zoo import build


def test_kinds_group_every_layers_unit_and_leave_out_the_rest():
    spec = build("bert")
    units = [u.name for u in build_cost_model(spec.model, spec.example_input, "channel").units]
    kinds = layer_kinds(spec.model, units)
    ffn = "model.bert.encoder.layer.*.intermediate.dense"
    assert kinds[ffn] == [f"model.bert.encoder.layer.{i}.intermediate.dense" for i in range(2)]
    assert not any("pooler" in u for members in kinds.values() for u in members)
    assert stack_prefix(spec.model) == "model.bert.encoder.layer."


def test_only_hugging_face_models_with_a_layer_stack_get_the_mode():
    encoder = build("transformer-encoder")
    assert not is_hf(encoder.model) and stack_prefix(encoder.model) is None
    assert layer_kinds(encoder.model, ["encoder.layers.0.linear1"]) == {}
    assert is_hf(build("vit").model)


def test_a_hidden_size_no_config_can_hold_is_a_reason_not_a_crash():
    """BERT's channel cut of its hidden size to 29: BertConfig refuses 29 with 4 heads (ValueError inside
    transformers); the reason is one line naming it."""
    spec = build("bert")
    ratios = {"model.bert.encoder.layer.0.attention.output.dense": 0.1}
    why = hf_refusal(spec, PruneConfig(model=spec.name, method="channel", ratios=ratios))
    assert why is not None and "not a multiple of the number of attention heads" in why and "\n" not in why
    assert hf_refusal(spec, PruneConfig(model=spec.name, method="neuron",
                                        ratios={f"model.bert.encoder.layer.{i}.intermediate.dense": 0.5
                                                for i in range(2)})) is None

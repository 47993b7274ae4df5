"""The decision guide of the source document ("Choosing your pruning strategy") as code: a situation in,
a granularity, criterion, schedule and starting ratio out, each with the guide's reason in one line.

The guide's questions and answers (pruning-overview.txt):
- bottleneck: memory -> aggressive weight/neuron pruning; speed -> filter/block pruning; hardware
  constraints -> structured pruning;
- accuracy loss: none affordable -> iterative or dynamic pruning; 2-5% tolerable -> aggressive one-shot;
- hardware: GPUs -> unstructured is okay; mobile/embedded -> structured is critical; specialised -> block;
- model: CNN -> filter pruning; transformer -> attention heads + layers; MLP -> neuron or weight pruning.
Where answers pull apart, hardware decides first (what the target can run), then the bottleneck, and the
model family picks the structured unit that fits it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from core import methods, schedule_evidence
from core.errors import PruneLabError
from core.importance import REGISTRY
from core.structure import has_attention

BOTTLENECKS = ("memory", "speed", "hardware")
LOSSES = ("none", "small", "tolerable")  # none: no loss affordable; small: under 2%; tolerable: 2-5%
HARDWARE = ("cpu", "gpu", "mobile", "specialized")
FAMILIES = ("cnn", "transformer", "mlp")

_STRUCTURED = {"cnn": ("channel", "filter pruning is natural for CNNs"),
               "transformer": ("head", "attention heads (then layers) are the natural units of a transformer"),
               "mlp": ("neuron", "hidden neurons are the natural units of an MLP")}
_RATIO = {"none": 0.3, "small": 0.5, "tolerable": 0.7}  # "prune conservatively first", aggressive if loss is ok


@dataclass(frozen=True)
class Situation:
    bottleneck: str
    accuracy_loss: str
    hardware: str
    family: str
    has_data: bool = True  # without a data set, criteria that need data (gradients, activations) are not offered

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.bottleneck, BOTTLENECKS, "bottleneck"), (self.accuracy_loss, LOSSES,
                                     "accuracy loss"), (self.hardware, HARDWARE, "hardware"),
                                     (self.family, FAMILIES, "model family")):
            if value not in allowed:
                raise PruneLabError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Recommendation:
    method: str
    criterion: str
    schedule: str
    ratio: float
    reason: str  # one line: why this method and schedule
    also: str = ""  # a second step worth trying, if the guide names one


def recommend(s: Situation) -> Recommendation:
    """What the guide recommends for s (see the module docstring for the order of the rules)."""
    method, why = _method(s)
    schedule, when = _schedule(s, method)
    technique = methods.get(method)
    criterion = _criterion(technique, s.has_data)
    also = technique.transformer_follow_up if s.family == "transformer" else ""
    return Recommendation(method, criterion, schedule, _RATIO[s.accuracy_loss], f"{why}; {when}", also)


def _criterion(technique: methods.Method, has_data: bool) -> str:
    """The method's suggested criterion, or (for a model without data) the first it accepts that needs none."""
    if has_data or not REGISTRY[technique.suggested_criterion].uses_data:
        return technique.suggested_criterion
    return next(c for c in technique.criteria() if not REGISTRY[c].uses_data)


def _method(s: Situation) -> tuple[str, str]:
    if s.hardware == "specialized":
        return "block", "specialised hardware runs block-sparse weights"
    if s.hardware == "mobile":
        method, why = _STRUCTURED[s.family]
        return method, f"mobile/embedded targets need structured pruning: {why}"
    if s.bottleneck == "hardware":
        method, why = _STRUCTURED[s.family]
        return method, f"hardware constraints call for structured pruning: {why}"
    if s.bottleneck == "speed":
        if s.hardware == "gpu" and s.family != "cnn":
            return "nm", "for speed on GPUs, 2:4 semi-structured sparsity runs on sparse tensor cores"
        method, why = _STRUCTURED[s.family]
        return method, f"speed comes from removing whole units: {why}"
    if s.family == "mlp":
        return "neuron", "memory: neuron pruning shrinks every layer of an MLP"
    return "unstructured", "memory: aggressive weight pruning (store it sparse or int8)" + (
        "; GPUs handle unstructured sparsity" if s.hardware == "gpu" else "")


def _schedule(s: Situation, method: str) -> tuple[str, str]:
    if s.accuracy_loss == "tolerable":
        return "oneshot", "2-5% loss is tolerable: aggressive one-shot pruning, then fine-tune"
    technique = methods.get(method)
    if "dynamic" in technique.schedules:
        return _measured(s.family, technique, "dynamic",
                         "no loss affordable: prune gradually during training (dynamic)")
    if "iterative" not in technique.schedules:
        return "oneshot", f"{technique.fixed_share}: prune once, then fine-tune longer"
    return _measured(s.family, technique, "iterative",
                     "no loss affordable: prune a little, fine-tune, repeat (iterative)")


def _measured(family: str, technique: methods.Method, kind: str, why: str) -> tuple[str, str]:
    """The guide's gradual `kind` checked against the schedules benchmark (core.schedule_evidence): kept, its figure
    cited, unless it measured below one-shot on a model of the family (highest measured ratio, either scope); then
    the method's gradual schedule that beat one-shot everywhere measured, by the largest worst-case lead, else
    one-shot. No evidence: the guide's answer as it is."""
    figure = schedule_evidence.worst(family, kind)
    if figure is None:
        return kind, why
    if figure.change >= 0:
        return kind, f"{why}; measured {figure.where()}: {figure.amount()} {figure.cite()}"
    lost = (f"no loss affordable: the guide says prune gradually, but {figure.where()}, {kind} measured "
            f"{figure.amount()} {figure.cite()}")
    if (more := schedule_evidence.longer(figure)) is not None:
        lost += (f"; with {more.epochs} epochs of fine-tuning, {kind} measured {more.amount()} {more.cite()}, so it "
                 "needs that longer budget")
    others = [schedule_evidence.worst(family, k) for k in technique.schedules if k not in ("oneshot", kind)]
    best = max((f for f in others if f is not None and f.change > 0), key=lambda f: f.change, default=None)
    if best is None:
        return "oneshot", f"{lost}: one-shot, with the whole fine-tuning budget"
    return best.kind, f"{lost}: {best.kind}, which measured {best.amount()} at worst ({best.where()})"


def detect_family(model: nn.Module) -> str:
    """transformer if it has attention (hand-written q/k/v or nn.MultiheadAttention), cnn if it has
    convolutions, else mlp."""
    if has_attention(model):
        return "transformer"
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return "cnn"
    return "mlp"

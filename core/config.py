"""PruneConfig: what to prune and how, as a small frozen, validated, versioned object.

Per-layer ratios are keyed by dotted module names (strings), so a config serialises, diffs and replays
onto a freshly built model. Reading rejects unknown versions and keys instead of guessing; version 1
files (before N:M, block, neuron, head and layer pruning, schedules and distillation) are read as the
version 2 config they equal: every new field at its default.

What a ratio means depends on the method: the fraction of a layer's weights (unstructured, block), of a
channel group's channels (channel) or hidden units (neuron), of an attention module's heads (head); for
nm it must be 1 - N/M (the layers listed get the N:M pattern). The layer method removes the blocks named
in `remove_blocks` and has no ratios.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import PruneLabError

CONFIG_VERSION = 2
READABLE_VERSIONS = (1, 2)
METHODS = ("unstructured", "nm", "block", "channel", "neuron", "head", "layer")
MASK_METHODS = ("unstructured", "nm", "block")  # zeros inside dense tensors (torch.nn.utils.prune masks)
SCHEDULES = ("oneshot", "iterative", "dynamic")
CURVES = ("linear", "cubic")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_ratio(name: str, ratio: Any) -> float:
    """A pruning ratio is the fraction removed: a finite number with 0 <= ratio < 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise PruneLabError(f"ratio for {name!r} must be a number, got {ratio!r}")  # NaN/inf checked below
    ratio = float(ratio)
    if not math.isfinite(ratio) or not 0.0 <= ratio < 1.0:
        raise PruneLabError(f"ratio for {name!r} must be at least 0 and below 1, got {ratio}")
    return ratio


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning budget of a run (the whole schedule's, in epochs; 0 skips it), and its options:
    knowledge distillation from the unpruned model, lottery-ticket rewind to the initial weights."""

    epochs: int = 0
    lr: float = 0.01  # peak learning rate of SGD with momentum, warm-up then cosine decay
    batch_size: int = 64
    distill: bool = False  # add a distillation loss toward the unpruned model's logits
    temperature: float = 4.0  # softens both logits' softmax in the distillation term
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha weighs the label loss
    rewind: bool = False  # lottery ticket: reset surviving weights to their initial values before training

    def __post_init__(self) -> None:
        if not _is_int(self.epochs) or not 0 <= self.epochs <= 1000:
            raise PruneLabError(f"finetune epochs must be an integer from 0 to 1000, got {self.epochs!r}")
        if not _is_number(self.lr) or not 0 < self.lr <= 10:
            raise PruneLabError(f"finetune lr must be a positive number up to 10, got {self.lr!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise PruneLabError(f"finetune batch_size must be a positive integer, got {self.batch_size!r}")
        for name in ("distill", "rewind"):
            if not isinstance(getattr(self, name), bool):
                raise PruneLabError(f"finetune {name} must be true or false, got {getattr(self, name)!r}")
        if not _is_number(self.temperature) or not 0 < self.temperature <= 100:
            raise PruneLabError(f"distillation temperature must be in (0, 100], got {self.temperature!r}")
        if not _is_number(self.alpha) or not 0 <= self.alpha <= 1:
            raise PruneLabError(f"distillation alpha must be in [0, 1], got {self.alpha!r}")
        if (self.distill or self.rewind) and self.epochs == 0:
            raise PruneLabError("distillation and rewind train the model: give at least one fine-tuning epoch")


@dataclass(frozen=True)
class Schedule:
    """When pruning happens. oneshot: prune, then fine-tune. iterative: `steps` rounds of pruning a
    little more (to the final ratio along `curve`) and fine-tuning for epochs/steps each. dynamic:
    gradual magnitude pruning during fine-tuning, masks recomputed every `update_every` optimiser
    steps along `curve` (cubic by default, as in Zhu & Gupta 2017), mask methods only."""

    kind: str = "oneshot"
    steps: int = 3
    curve: str = "cubic"  # linear: equal increments; cubic: large cuts first, small near the end (AGP)
    update_every: int = 10

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise PruneLabError(f"unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if self.curve not in CURVES:
            raise PruneLabError(f"unknown schedule curve {self.curve!r}; choose linear or cubic")
        if not _is_int(self.steps) or not 1 <= self.steps <= 100:
            raise PruneLabError(f"schedule steps must be an integer from 1 to 100, got {self.steps!r}")
        if not _is_int(self.update_every) or self.update_every < 1:
            raise PruneLabError(f"schedule update_every must be a positive integer, got {self.update_every!r}")

    def fraction(self, t: float) -> float:
        """Share of the final ratio reached at progress t in [0, 1]: t (linear) or 1 - (1 - t)^3 (cubic)."""
        t = min(max(t, 0.0), 1.0)
        return t if self.curve == "linear" else 1 - (1 - t) ** 3


@dataclass(frozen=True)
class Pattern:
    """Shapes of the semi-structured methods: N:M keeps n of every m consecutive input weights; block
    prunes aligned (rows, cols) blocks of the 2-D weight."""

    n: int = 2
    m: int = 4
    block: tuple[int, int] = (4, 1)

    def __post_init__(self) -> None:
        if not (_is_int(self.n) and _is_int(self.m) and 0 < self.n < self.m <= 64):
            raise PruneLabError(f"N:M needs integers 0 < N < M <= 64, got {self.n}:{self.m}")
        block = tuple(self.block) if isinstance(self.block, (list, tuple)) else ()
        if len(block) != 2 or not all(_is_int(b) and 1 <= b <= 256 for b in block) or block == (1, 1):
            raise PruneLabError(f"block must be [rows, cols] of 1..256 (not 1x1), got {self.block!r}")
        object.__setattr__(self, "block", block)


@dataclass(frozen=True)
class PruneConfig:
    """A complete, replayable pruning recipe for one base model."""

    model: str  # registry name of the base model
    method: str  # one of METHODS
    ratios: dict[str, float]  # module (or coupled group) name -> fraction removed, 0 <= r < 1
    criterion: str = "l1"
    model_fingerprint: str = ""  # core.models.fingerprint of the base weights; "" = not checked
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    calibration_samples: int = 512  # training images used to re-estimate BatchNorm statistics
    seed: int = 0
    schedule: Schedule = field(default_factory=Schedule)
    pattern: Pattern = field(default_factory=Pattern)
    remove_blocks: tuple[str, ...] = ()  # layer method: the blocks removed (dotted module names)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
        object.__setattr__(self, "version", CONFIG_VERSION)  # version 2 only added fields, defaulting to v1's ways
        for name in ("model", "model_fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise PruneLabError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.method not in METHODS:
            raise PruneLabError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        from core.importance import get as get_criterion  # the registry of criteria

        get_criterion(self.criterion)
        if not isinstance(self.ratios, dict):
            raise PruneLabError("ratios must be a mapping of layer name to ratio")
        checked = {str(k): check_ratio(str(k), v) for k, v in sorted(self.ratios.items())}
        object.__setattr__(self, "ratios", checked)  # a private sorted copy: callers' dicts stay theirs
        for name, cls, example in (("finetune", FinetuneConfig, '{"epochs": 1}'),
                                   ("schedule", Schedule, '{"kind": "iterative", "steps": 3}'),
                                   ("pattern", Pattern, '{"n": 2, "m": 4}')):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _build(cls, value, name))
            elif not isinstance(value, cls):
                raise PruneLabError(f"{name} must be an object like {example}, got {value!r}")
        self._check_method_options()
        if not _is_int(self.seed) or self.seed < 0:
            raise PruneLabError(f"seed must be a non-negative integer, got {self.seed!r}")
        # at least one image: BatchNorm statistics re-estimated from nothing would be reset to 0/1
        if not _is_int(self.calibration_samples) or self.calibration_samples < 1:
            raise PruneLabError(f"calibration_samples must be a positive integer, got {self.calibration_samples!r}")

    def _check_method_options(self) -> None:
        """Combinations that cannot work are refused here, with the reason, not deep inside a run."""
        blocks = self.remove_blocks
        if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, str) for b in blocks):
            raise PruneLabError(f"remove_blocks must be a list of module names, got {blocks!r}")
        object.__setattr__(self, "remove_blocks", tuple(dict.fromkeys(blocks)))
        if self.method == "layer" and self.ratios:
            raise PruneLabError("the layer method takes the blocks to remove in remove_blocks, not ratios")
        if self.method != "layer" and self.remove_blocks:
            raise PruneLabError(f"remove_blocks is for the layer method, not {self.method}")
        if self.method == "nm":
            want = round(1 - self.pattern.n / self.pattern.m, 6)
            wrong = sorted(k for k, r in self.ratios.items() if r and abs(r - want) > 1e-6)
            if wrong:
                raise PruneLabError(f"N:M {self.pattern.n}:{self.pattern.m} removes exactly {want:g} of a layer's "
                                    f"weights; {', '.join(wrong[:3])} ask for another ratio")
        kind = self.schedule.kind
        if kind == "dynamic" and self.method not in ("unstructured", "block"):
            raise PruneLabError("the dynamic schedule updates masks during training: use it with unstructured or "
                                f"block pruning, not {self.method}")
        if kind == "dynamic" and self.criterion not in ("l1", "l2"):
            raise PruneLabError("the dynamic schedule re-ranks weights by magnitude every few steps: use criterion "
                                f"l1 or l2, not {self.criterion}")
        if kind == "iterative" and self.method == "nm":
            raise PruneLabError("N:M sparsity is fixed at 1 - N/M: an iterative schedule has nothing to grow")
        if kind != "oneshot" and self.finetune.epochs == 0:
            raise PruneLabError(f"the {kind} schedule fine-tunes between pruning steps: give at least one epoch")
        if self.finetune.rewind and self.method not in MASK_METHODS:
            raise PruneLabError("lottery-ticket rewind resets surviving weights in place: use it with a mask "
                                "method (unstructured, nm, block)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["remove_blocks"] = list(self.remove_blocks)
        data["pattern"]["block"] = list(self.pattern.block)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> PruneConfig:
        if not isinstance(data, dict):
            raise PruneLabError("a config must be a JSON object")
        if "version" not in data:
            raise PruneLabError("config has no 'version' field; is this a PruneLab config?")
        _check_version(data["version"])  # first: other versions may have other fields
        return _build(cls, data, "config")

    @classmethod
    def from_json(cls, text: str) -> PruneConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PruneLabError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> PruneConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PruneLabError(f"cannot read config {path}: {e}") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> None:
        from core.files import write_atomic

        write_atomic(Path(path), self.to_json().encode())


def _check_version(version: Any) -> None:
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise PruneLabError(f"config version {version!r} is not supported (this PruneLab reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))})")


def _build(cls: type, data: dict[str, Any], what: str) -> Any:
    """Construct a config dataclass from a dict, rejecting unknown and missing fields by name."""
    if not isinstance(data, dict):
        raise PruneLabError(f"{what} must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PruneLabError(f"{what} has unknown field(s): {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as e:  # a required field is missing
        raise PruneLabError(f"{what} is incomplete: {e}") from None

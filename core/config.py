"""PruneConfig: what to prune and how, as a small frozen, validated, versioned object.

Per-layer ratios are keyed by dotted module names (strings), so a config serialises, diffs and replays
onto a freshly built model. Reading rejects unknown versions and keys instead of guessing; version 1
files (before N:M, block, neuron, head and layer pruning, schedules and distillation) and version 2 files
(before the fine-tune recipe's optimizer and BatchNorm handling) and version 3 files (before post-training
repair) and version 4 files (before int8 quantisation) and version 5 files (before an iterative schedule's last-round
share) are read as the version 6 config they equal: every new field at its default, which is what those versions did
(SGD, BatchNorm statistics trained, no repair, float weights, the budget split evenly between rounds).

What a ratio means depends on the method: the fraction of a layer's weights (unstructured, block), of a
channel group's channels (channel) or hidden units (neuron), of an attention module's heads (head); for
nm it must be 1 - N/M (the layers listed get the N:M pattern). The layer method removes the blocks named
in `remove_blocks` and has no ratios.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core import methods
from core.errors import PruneLabError
from core.files import write_atomic
from core.importance import get as get_criterion
from core.methods import Method
from core.ratios import check_ratio as check_ratio  # re-exported: the one ratio check lives in core.ratios

CONFIG_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
QUANTIZE = ("none", "int8")  # after the last stage: int8 = onnxruntime static quantisation (core.deploy)
SCHEDULES = ("oneshot", "iterative", "dynamic")
CURVES = ("linear", "cubic")
OPTIMIZERS = ("sgd", "adamw")  # fine-tuning optimisers (core.finetune): SGD with Nesterov momentum 0.9, AdamW
BATCHNORM_MODES = ("train", "frozen", "recalibrate")  # BatchNorm statistics while fine-tuning (core.finetune.Recipe)


MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; a file far larger is not one (read no further)
MAX_JSON_DEPTH = 64  # a config nests 3 levels; deeper JSON is refused before the parser recurses

# Allowed ranges of every numeric setting, (low, high) inclusive, in one place: validation, the CLI and the
# dashboard's widgets read them; each message names the range. Beyond them a value passes type checks but
# cannot work: temperature 1e-300 makes logits / T overflow to NaN; seeds above 2**32 - 1 overflow numpy's
# and torch's generators; sample counts and batch sizes beyond a million ask for memory no machine here has.
LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (0, 1000),  # fine-tuning epochs
    "lr": (1e-8, 10.0),  # peak learning rate
    "batch_size": (1, 65_536),  # examples per optimiser step
    "temperature": (0.1, 100.0),  # distillation softmax temperature; below ~0.1 logits / T overflow
    "alpha": (0.0, 1.0),  # weight of the distillation term
    "steps": (1, 100),  # iterative rounds
    "update_every": (1, 1_000_000),  # optimiser steps between dynamic mask updates
    "last_round": (0.05, 0.95),  # iterative: share of the fine-tuning budget spent after the last cut
    "seed": (0, 2**32 - 1),  # numpy.random.default_rng / torch.manual_seed range shared by both
    "calibration_samples": (1, 1_000_000),  # examples scored / used for BatchNorm statistics
    "eval_samples": (1, 1_000_000),  # examples each sensitivity point is evaluated on
    "stages": (1, 100),  # stages of a recipe, this config and its `then`: each prunes (and may fine-tune) the model
}


def check_int(name: str, value: Any, what: str | None = None) -> int:
    """An integer setting within LIMITS[name]; the message names the range."""
    low, high = LIMITS[name]
    if not _is_int(value) or not low <= value <= high:
        raise PruneLabError(f"{what or name} must be an integer from {fmt_limit(low)} to {fmt_limit(high)}, got "
                            f"{_short(value)}")
    return value


def check_number(name: str, value: Any, what: str | None = None) -> float:
    """A finite number within LIMITS[name]; the message names the range."""
    low, high = LIMITS[name]
    if not _is_number(value) or not low <= value <= high:
        raise PruneLabError(f"{what or name} must be a number from {fmt_limit(low)} to {fmt_limit(high)}, got "
                            f"{_short(value)}")
    return float(value)


def fmt_limit(value: float) -> str:
    """A limit as people write it: whole numbers in full (4294967295, not 4.29497e+09), others short (1e-08)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _short(value: Any) -> str:
    """A value for a message: at most 40 characters (a 5,000-digit integer is not printed whole)."""
    text = repr(value) if not _is_int(value) or abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning budget of a run (the whole schedule's, in epochs; 0 skips it), its recipe (optimiser, peak
    learning rate, BatchNorm handling: core.recipes chooses them from the model unless the user sets them) and its
    options: knowledge distillation from the unpruned model, lottery-ticket rewind to the initial weights. The
    defaults are the recipe PruneLab's own sample models were measured with (and all that versions 1-2 knew)."""

    epochs: int = 0
    lr: float = 0.01  # peak learning rate, warm-up then cosine decay
    batch_size: int = 64
    distill: bool = False  # add a distillation loss toward the unpruned model's logits
    temperature: float = 4.0  # softens both logits' softmax in the distillation term
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha weighs the label loss
    rewind: bool = False  # lottery ticket: reset surviving weights to their initial values before training
    optimizer: str = "sgd"  # one of OPTIMIZERS
    batchnorm: str = "train"  # one of BATCHNORM_MODES

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(name, getattr(self, name), f"finetune {name}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("batchnorm", BATCHNORM_MODES)):
            if getattr(self, name) not in allowed:
                raise PruneLabError(f"finetune {name} must be one of {', '.join(allowed)}, got "
                                    f"{_short(getattr(self, name))}")
        for name in ("distill", "rewind"):
            if not isinstance(getattr(self, name), bool):
                raise PruneLabError(f"finetune {name} must be true or false, got {getattr(self, name)!r}")
        check_number("lr", self.lr, "finetune lr")
        check_number("temperature", self.temperature, "distillation temperature")
        check_number("alpha", self.alpha, "distillation alpha")
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
    # iterative: share of the fine-tuning budget (optimiser steps) spent after the last cut, the rest split evenly
    # between the earlier rounds; None: every round an equal share (all that versions 1-5 knew). On mnist-resnet at
    # 90% per layer and 1 epoch, 80% after the last cut ended at 0.948 accuracy, an equal share at 0.746 (seed 0,
    # bench.schedules)
    last_round: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise PruneLabError(f"unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}")
        if self.curve not in CURVES:
            raise PruneLabError(f"unknown schedule curve {self.curve!r}; choose linear or cubic")
        check_int("steps", self.steps, "schedule steps")
        check_int("update_every", self.update_every, "schedule update_every")
        if self.last_round is not None:
            check_number("last_round", self.last_round, "schedule last_round")

    def split(self, budget: int) -> list[int]:
        """Optimiser steps of each round (one round unless iterative), summing to `budget`: an equal share each
        (the remainder to the last), or `last_round` of it after the last cut and the rest shared evenly before."""
        rounds = self.steps if self.kind == "iterative" else 1
        if rounds == 1 or self.last_round is None:
            return [budget // rounds] * (rounds - 1) + [budget // rounds + budget % rounds]
        early = budget - round(budget * self.last_round)
        return [early // (rounds - 1)] * (rounds - 1) + [budget - early // (rounds - 1) * (rounds - 1)]

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
    method: str  # a name in core.methods.REGISTRY
    ratios: dict[str, float]  # module (or coupled group) name -> fraction removed, 0 <= r < 1
    criterion: str = "l1"
    model_fingerprint: str = ""  # core.spec.fingerprint of the base weights; "" = not checked
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    calibration_samples: int = 512  # training images used to re-estimate BatchNorm statistics
    seed: int = 0
    schedule: Schedule = field(default_factory=Schedule)
    pattern: Pattern = field(default_factory=Pattern)
    remove_blocks: tuple[str, ...] = ()  # layer method: the blocks removed (dotted module names)
    repair: str = "none"  # post-training repair from calibration data (core.repair): none, sparsegpt, lstsq
    # a recipe: the stages that follow this one, in order, each on the model the one before left (same model name,
    # no fingerprint: that model is not the base), e.g. drop a layer, then remove heads, then 30% of the weights
    then: tuple[PruneConfig, ...] = ()
    quantize: str = "none"  # after the last stage, measured as such: "int8" (onnxruntime static, QDQ) or none
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
        object.__setattr__(self, "version", CONFIG_VERSION)  # later versions only added fields, defaulting to old ways
        for name in ("model", "model_fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise PruneLabError(f"{name} must be a string, got {getattr(self, name)!r}")
        methods.get(self.method)  # unknown names are refused with the list of registered ones
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
        if self.quantize not in QUANTIZE:
            raise PruneLabError(f"unknown quantize {self.quantize!r}; choose one of {', '.join(QUANTIZE)}")
        object.__setattr__(self, "then", self._stages())
        check_int("seed", self.seed)
        # at least one image: BatchNorm statistics re-estimated from nothing would be reset to 0/1
        check_int("calibration_samples", self.calibration_samples)

    def _stages(self) -> tuple[PruneConfig, ...]:
        """`then` as configs (dicts read from JSON are built), each for this model, unfingerprinted, flat."""
        if not isinstance(self.then, (list, tuple)):
            raise PruneLabError(f"then must be a list of stage configs, got {self.then!r}")
        check_int("stages", 1 + len(self.then), "a recipe's number of stages (this config and its 'then')")
        stages = tuple(s if isinstance(s, PruneConfig) else PruneConfig.from_dict(
            {"version": self.version, "model": self.model, **s} if isinstance(s, dict) else s) for s in self.then)
        for k, stage in enumerate(stages, 2):
            if stage.model != self.model:
                raise PruneLabError(f"stage {k} is for model {stage.model!r}, not {self.model!r}")
            if stage.model_fingerprint:
                raise PruneLabError(f"stage {k} has a model_fingerprint: only the first stage's model is the base")
            if stage.then:
                raise PruneLabError(f"stage {k} has stages of its own: list every stage in the first one's 'then'")
            if stage.quantize != "none":
                raise PruneLabError(f"stage {k} has quantize: it applies after the last stage, so set it on the first "
                                    "config (beside 'then')")
        methods_in_order = [self.technique, *(stage.technique for stage in stages)]
        for k, (before, after) in enumerate(zip(methods_in_order, methods_in_order[1:], strict=False), 2):
            if before.mask and not after.mask:
                raise PruneLabError(f"stage {k} ({after.name}) follows a mask stage ({before.name}): cut the "
                                    "structure first — a structural cut cannot carry masks through")
        return stages

    def for_model(self, model: str) -> PruneConfig:
        """This config (every stage of it) named for `model`: a replay onto the same weights under another name."""
        return replace(self, model=model, then=tuple(replace(s, model=model) for s in self.then))

    def methods_text(self) -> str:
        """'layer → unstructured (sparsegpt repair) → int8': each stage's method and repair, in order, and the
        quantisation after them."""
        steps = [s.method + (f" ({s.repair} repair)" if s.repair != "none" else "") for s in self.stages()]
        return " → ".join(steps + ([self.quantize] if self.quantize != "none" else []))

    def stages(self) -> list[PruneConfig]:
        """Every pruning stage in order: this config without `then` (nor the quantisation after the last), then
        each of `then`."""
        return [replace(self, then=(), quantize="none"), *self.then]

    def _check_method_options(self) -> None:
        """Combinations that cannot work are refused here, with the reason, not deep inside a run."""
        blocks = self.remove_blocks
        if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, str) for b in blocks):
            raise PruneLabError(f"remove_blocks must be a list of module names, got {blocks!r}")
        object.__setattr__(self, "remove_blocks", tuple(dict.fromkeys(blocks)))
        self.technique.validate(self)  # the method's own part: criteria, ratios or blocks, pattern
        kind = self.schedule.kind
        dynamic = [name for name, m in methods.REGISTRY.items() if "dynamic" in m.schedules]
        if refusal := self.technique.schedule_refusal(kind, dynamic):
            raise PruneLabError(refusal)
        if kind == "dynamic" and self.criterion not in ("l1", "l2"):
            raise PruneLabError("the dynamic schedule re-ranks weights by magnitude every few steps: use criterion "
                                f"l1 or l2, not {self.criterion}")
        if kind != "oneshot" and self.finetune.epochs == 0:
            raise PruneLabError(f"the {kind} schedule fine-tunes between pruning steps: give at least one epoch")
        if self.finetune.rewind and not self.technique.mask:
            raise PruneLabError("lottery-ticket rewind resets surviving weights in place: use it with a mask "
                                f"method ({', '.join(methods.mask_names())})")

    @property
    def technique(self) -> Method:
        """The registered method this config names (core.methods): what it cuts and how."""
        return methods.get(self.method)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["remove_blocks"] = list(self.remove_blocks)
        data["pattern"]["block"] = list(self.pattern.block)
        data["then"] = [stage.to_dict() for stage in self.then]
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
        return cls.from_dict(parse_json(text, "config"))

    @classmethod
    def load(cls, path: str | Path) -> PruneConfig:
        data = read_json_file(path, "config")
        try:
            return read_config_bytes(data)
        except PruneLabError as e:
            raise PruneLabError(f"{path}: {e}") from None

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), self.to_json().encode())


def read_json_file(path: str | Path, what: str = "JSON file") -> bytes:
    """The bytes of a small JSON file: a regular file of at most MAX_CONFIG_BYTES, checked before reading
    (a device such as /dev/zero, a fifo or a huge file is refused, not read until memory runs out)."""
    path = Path(path)
    try:
        info = path.stat()
        if not path.is_file():
            raise PruneLabError(f"cannot read {what} {path}: not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise PruneLabError(f"{what} {path} is too large ({info.st_size:,} bytes; at most {MAX_CONFIG_BYTES:,})")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # the file may grow between stat and read
    except OSError as e:
        raise PruneLabError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise PruneLabError(f"{what} {path} is too large (more than {MAX_CONFIG_BYTES:,} bytes)")
    return data


def parse_json(text: str | bytes, what: str = "config", limit: int = MAX_CONFIG_BYTES) -> Any:
    """JSON text (a UTF-8 byte order mark allowed, as editors on Windows write it) parsed, with every way it
    can fail as one PruneLabError: not UTF-8, too large, nested deeper than a config ever is, integers too
    long to convert, or invalid."""
    if isinstance(text, bytes):
        if len(text) > limit:
            raise PruneLabError(f"{what} is too large ({len(text):,} bytes; at most {limit:,})")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PruneLabError(f"{what} is not UTF-8 text: is it a PruneLab config.json?") from None
    text = text.removeprefix("\ufeff")
    if _depth(text) > MAX_JSON_DEPTH:
        raise PruneLabError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep: not a PruneLab config")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PruneLabError(f"{what} is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4,300 digits
        raise PruneLabError(f"{what} cannot be read: {str(e).split(';')[0]}") from None


def _depth(text: str) -> int:
    """Deepest bracket nesting of JSON text, strings skipped (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = ch == "\\", ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_config_bytes(data: bytes) -> PruneConfig:
    """A config from a file's bytes, read the same way by the CLI and the dashboard's import."""
    return PruneConfig.from_dict(parse_json(data, "config"))


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

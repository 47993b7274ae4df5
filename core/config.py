"""PruneConfig: what to prune and how, as a small frozen, validated, versioned object.

Per-layer ratios are keyed by dotted module names (strings), so a config serialises, diffs and replays
onto a freshly built model. Reading rejects unknown versions and keys instead of guessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import PruneLabError

CONFIG_VERSION = 1
METHODS = ("unstructured", "channel")


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
    """The brief fine-tune after pruning. epochs=0 skips it. Defaults are core.finetune.Recipe's."""

    epochs: int = 0
    lr: float = 0.01  # peak learning rate of SGD with momentum, warm-up then cosine decay
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not _is_int(self.epochs) or not 0 <= self.epochs <= 1000:
            raise PruneLabError(f"finetune epochs must be an integer from 0 to 1000, got {self.epochs!r}")
        if not _is_number(self.lr) or not 0 < self.lr <= 10:
            raise PruneLabError(f"finetune lr must be a positive number up to 10, got {self.lr!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise PruneLabError(f"finetune batch_size must be a positive integer, got {self.batch_size!r}")


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
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
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
        if isinstance(self.finetune, dict):
            object.__setattr__(self, "finetune", _build(FinetuneConfig, self.finetune, "finetune"))
        elif not isinstance(self.finetune, FinetuneConfig):
            raise PruneLabError(f"finetune must be an object like {{\"epochs\": 1}}, got {self.finetune!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise PruneLabError(f"seed must be a non-negative integer, got {self.seed!r}")
        # at least one image: BatchNorm statistics re-estimated from nothing would be reset to 0/1
        if not _is_int(self.calibration_samples) or self.calibration_samples < 1:
            raise PruneLabError(f"calibration_samples must be a positive integer, got {self.calibration_samples!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    if not _is_int(version) or version != CONFIG_VERSION:
        raise PruneLabError(
            f"config version {version!r} is not supported (this PruneLab reads version {CONFIG_VERSION})"
        )


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

"""The default value of every option the CLI and the dashboard both offer, read from where it is defined once: the
field defaults of the dataclasses that carry the option (PruneConfig and its parts, SweepSpec). The CLI's options,
the dashboard widgets and the dataclasses thus cannot disagree about what "not set" means."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from core.config import FinetuneConfig, Pattern, PruneConfig, Schedule
from core.sensitivity import SweepSpec


def default(cls: type, name: str) -> Any:
    """The default of dataclass field `name` of `cls` (its default_factory called, for a mutable one)."""
    field = next(f for f in fields(cls) if f.name == name)
    return field.default_factory() if field.default is MISSING else field.default  # type: ignore[misc]


METHOD = "channel"  # the method offered first: it shrinks layers, so it changes size and latency
CRITERION: str = default(PruneConfig, "criterion")
SEED: int = default(PruneConfig, "seed")
CALIBRATION_SAMPLES: int = default(PruneConfig, "calibration_samples")
FINETUNE = FinetuneConfig()  # epochs, lr, distillation, rewind
PAGE_FINETUNE_EPOCHS = 1  # the Tune page proposes one epoch (a cut model usually needs it); the CLI asks for it
SCHEDULE = Schedule()  # kind, steps, curve, update_every
PATTERN = Pattern()  # N:M and block shape

SWEEP_GRID: tuple[float, ...] = default(SweepSpec, "grid")
SWEEP_EVAL_SAMPLES: int = default(SweepSpec, "eval_samples")
SWEEP_CALIBRATION_SAMPLES: int = default(SweepSpec, "calibration_samples")
SWEEP_SEED: int = default(SweepSpec, "seed")
SWEEP_CRITERION: str = default(SweepSpec, "criterion")

"""What a search asks: a model, budget targets, solver strategies and seeds (SearchSpec), and the grid of trials
target x strategy x seed it expands to. Frozen, validated on creation (one-line PruneLabErrors), versioned JSON,
so the CLI, a dashboard page and search.json all carry the same object."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from core import methods
from core.allocate import STRATEGIES, TARGETS, Target
from core.config import check_int, parse_json
from core.errors import PruneLabError
from core.workflows.defaults import CRITERION, METHOD, PAGE_FINETUNE_EPOCHS, SEED

SPEC_VERSION = 1


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: the solver's target value (of the spec's target kind), strategy and seed."""

    target: float
    strategy: str
    seed: int
    kind: str = "flops"

    @property
    def key(self) -> str:
        """A readable, folder-safe name unique within the search, e.g. flops1.5-uniform-seed0."""
        return f"{self.kind}{self.target:g}-{self.strategy}-seed{self.seed}"


@dataclass(frozen=True)
class SearchSpec:
    """A grid search: each target (core.allocate.Target of kind `target`: for flops/params a reduction factor,
    2 = half) solved by each strategy with each seed (the config's seed: calibration, fine-tuning order and the
    global strategy's scores), then applied with `finetune_epochs` of the model's own recipe. method/criterion:
    what the ratios prune and rank by (the sensitivity strategy's sweep is measured with the same pair);
    hardware_aware: solve for widths the runtime is fast at (channel pruning only)."""

    model: str
    targets: tuple[float, ...]
    strategies: tuple[str, ...] = STRATEGIES
    seeds: tuple[int, ...] = (SEED,)
    finetune_epochs: int = PAGE_FINETUNE_EPOCHS
    hardware_aware: bool = False
    target: str = "flops"
    method: str = METHOD
    criterion: str = CRITERION

    def __post_init__(self) -> None:
        for name in ("targets", "strategies", "seeds"):  # JSON lists become tuples: the spec stays hashable
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise PruneLabError(f"{name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not isinstance(self.model, str) or not self.model.strip():
            raise PruneLabError("a search needs a model")
        self._check_targets()
        self._check_strategies()
        if not self.seeds:
            raise PruneLabError("a search needs at least one seed")
        for seed in self.seeds:
            check_int("seed", seed)
        _no_repeats("seed", self.seeds)
        check_int("epochs", self.finetune_epochs, "finetune epochs")
        if not isinstance(self.hardware_aware, bool):
            raise PruneLabError(f"hardware_aware must be true or false, got {self.hardware_aware!r}")
        self._check_method()

    def _check_targets(self) -> None:
        if self.target not in TARGETS:
            raise PruneLabError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if not self.targets:
            raise PruneLabError("a search needs at least one target")
        for value in self.targets:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PruneLabError(f"a target must be a number, got {value!r}")
            Target(self.target, float(value))  # the solver's own check (e.g. a reduction factor is at least 1)
        object.__setattr__(self, "targets", tuple(float(v) for v in self.targets))
        _no_repeats("target", self.targets)

    def _check_strategies(self) -> None:
        if not self.strategies:
            raise PruneLabError("a search needs at least one strategy")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise PruneLabError(f"unknown strategy {s!r}; choose one of {', '.join(STRATEGIES)}")
        _no_repeats("strategy", self.strategies)

    def _check_method(self) -> None:
        technique = methods.get(self.method)
        if not technique.solved:
            solved = [n for n, m in methods.REGISTRY.items() if m.solved]
            raise PruneLabError(f"the budget solver does not set {self.method} ratios; choose one of "
                                f"{', '.join(solved)}")
        technique.check_criterion(self.criterion)
        if "sensitivity" in self.strategies and not technique.swept:
            raise PruneLabError(f"the sensitivity strategy needs a sweep, and {self.method} pruning is not swept")
        if self.hardware_aware and not technique.hardware_aware:
            raise PruneLabError("hardware-aware solving needs channel pruning (masks do not change widths)")

    def trials(self) -> list[Trial]:
        """The grid, target-major, then strategy, then seed."""
        return [Trial(t, s, seed, self.target) for t in self.targets for s in self.strategies for seed in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(version=SPEC_VERSION, targets=list(self.targets), strategies=list(self.strategies),
                    seeds=list(self.seeds))
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpec:
        if not isinstance(data, dict):
            raise PruneLabError("a search spec must be a JSON object")
        if data.get("version") != SPEC_VERSION:
            raise PruneLabError(f"search spec version {data.get('version')!r} is not one this PruneLab reads "
                                f"({SPEC_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"version"})
        if unknown:
            raise PruneLabError(f"a search spec has no field {', '.join(map(repr, unknown))}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as e:  # a missing required field
            raise PruneLabError(f"search spec: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        return cls.from_dict(parse_json(text, "search spec"))


def _no_repeats(what: str, values: tuple) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise PruneLabError(f"{what} {v!r} is given twice")
        seen.add(v)

"""The Method base class: what one pruning method declares and does, in one object.

A method is named in a PruneConfig by its `name`; everything the CLI, the config's validation, the
estimate, the schedules and the dashboard need to know about it is an attribute or a method here,
so adding a method is one file (a subclass) plus its registration in core.methods, never a string
compared across the code.

This module sits below core.config (the config validates itself through the registry), so it reads
configs by structural type (core.protocols.ConfigLike) and imports nothing that imports core.config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import Unit, kept_channels, ratio_for
from core.importance import REGISTRY as CRITERIA
from core.importance import Calibration, channel_scores
from core.protocols import ConfigLike, CostLike, PatternLike, RepairProgress
from core.ratios import check_ratio
from core.spec import ModelSpec


def nm_share(n: int, m: int) -> float:
    """The share of a layer's weights an N:M pattern removes: 1 - N/M, rounded as configs store ratios."""
    return round(1 - n / m, 6)


@dataclass(frozen=True)
class PlanOptions:
    """How "remove R" is turned into a config (core.plan.plan's keywords)."""

    criterion: str = "l1"
    pattern: PatternLike | None = None  # nm: the N:M pattern (core.plan passes the config's default)
    scope: str = "layer"  # unstructured: "global" is one score threshold across all layers
    rank: str = "cosine"  # layer: how blocks are ranked ("cosine" or "sensitivity")
    calibration_samples: int = 512
    seed: int = 0


class Method:
    """One pruning method. Subclasses set the class attributes and implement units and cut."""

    name: ClassVar[str]
    mask: ClassVar[bool]  # True: zeros inside dense tensors (torch.nn.utils.prune masks); False: shrinks the net
    unit: ClassVar[str]  # what a unit's size counts, in the CLI's `layers` listing
    unit_heading: ClassVar[str] = "layer"  # what one slider of the Tune page sets a share of
    all_label: ClassVar[str] = "All layers"  # the Tune page's slider that moves every unit's slider
    width_units: ClassVar[str | None] = None  # whose units the width chart cuts by (None: widths stay)
    help: ClassVar[str]  # one line for users: what it removes and what that buys
    no_units: ClassVar[str] = "has nothing this method can prune"  # after the model's name, when units() is empty
    sliders: ClassVar[bool] = True  # one ratio slider per unit (False: the method has its own controls)
    suggested_criterion: ClassVar[str] = "l1"  # what the decision guide (core.strategy) proposes with it
    transformer_follow_up: ClassVar[str] = ""  # the guide's next step on a transformer, if any
    fixed_share: ClassVar[str] = ""  # why it cannot grow step by step (a method without an iterative schedule)
    pattern: ClassVar[str | None] = None  # the Pattern fields it reads: "nm" (n, m), "block" (block shape)
    uses_criterion: ClassVar[bool] = True  # a criterion ranks its units (layer: --rank does; no selector shown)
    ranking: ClassVar[str] = "A criterion ranks the units for removal (lowest first)."  # when uses_criterion is False
    needs_ratio: ClassVar[bool] = True  # "remove R" needs R (nm: the pattern fixes the share)
    takes_blocks: ClassVar[bool] = False  # the config names blocks to remove (remove_blocks), not ratios
    swept: ClassVar[bool] = False  # sensitivity sweeps measure it (and predict accuracy from the sweep)
    solved: ClassVar[bool] = False  # the budget solver fills its ratios
    hardware_aware: ClassVar[bool] = False  # width-latency tables apply (widths it cuts change run time)
    global_scope: ClassVar[bool] = False  # one score threshold across all layers is offered
    schedules: ClassVar[tuple[str, ...]] = ("oneshot", "iterative")
    repairs: ClassVar[tuple[str, ...]] = ()  # post-training repairs it takes (core.repair_layers), beside "none"

    # ---- what it accepts --------------------------------------------------------------------------

    def criteria(self) -> tuple[str, ...]:
        """The importance criteria that can rank this method's units (default: every registered one)."""
        return tuple(CRITERIA)

    def check_criterion(self, criterion: str) -> None:
        """Refuse a criterion this method cannot rank by, naming the ones it can."""
        if criterion not in self.criteria():
            raise PruneLabError(f"the {self.name} method ranks by {', '.join(self.criteria())}; not {criterion!r}")

    def validate(self, config: ConfigLike) -> None:
        """Refuse this method's part of a config that cannot work (called by PruneConfig on creation)."""
        self.check_criterion(config.criterion)
        if self.takes_blocks and config.ratios:
            raise PruneLabError(f"the {self.name} method takes the blocks to remove in remove_blocks, not ratios")
        if not self.takes_blocks and config.remove_blocks:
            raise PruneLabError(f"remove_blocks is for the layer method, not {self.name}")
        repair = config.repair
        if repair != "none" and repair not in self.repairs:
            takes = f"it takes {', '.join(self.repairs)}" if self.repairs else "it has no post-training repair"
            raise PruneLabError(f"the {self.name} method cannot repair with {repair!r}: {takes}")

    def schedule_refusal(self, kind: str, dynamic: list[str]) -> str | None:
        """Why a schedule kind cannot run with this method (None: it can). `dynamic` names the methods that
        take the dynamic schedule, for the message."""
        if kind in self.schedules:
            return None
        if kind == "dynamic":
            return ("the dynamic schedule updates masks during training: use it with "
                    f"{' or '.join(dynamic)} pruning, not {self.name}")
        return f"the {kind} schedule does not apply to {self.name} pruning"

    # ---- what it does ----------------------------------------------------------------------------

    def units(self, model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
        """The model's units for this method (one slider each): layers, channel groups, heads or blocks."""
        raise NotImplementedError

    def why_none(self, model: nn.Module, example_input: torch.Tensor) -> str:
        """Why units() found nothing in model, for the one-line refusal (default: no_units)."""
        return self.no_units

    def plan(self, spec: ModelSpec, ratio: float | None, options: PlanOptions) -> tuple[dict[str, float],
                                                                                        tuple[str, ...]]:
        """(ratios, remove_blocks) that "remove `ratio`" means: `ratio` of every unit by default."""
        if ratio is None:
            raise PruneLabError(f"--ratio is needed for the {self.name} method")
        ratio = check_ratio(self.name, ratio)
        found = self.units(spec.model, spec.example_input)
        if not found:
            raise PruneLabError(f"{spec.name} has nothing the {self.name} method can prune "
                                f"({self.why_none(spec.model, spec.example_input)})")
        if options.scope != "layer" and not self.global_scope:
            raise PruneLabError("a global threshold is for unstructured pruning; other methods prune per unit")
        return {u.name: ratio for u in found}, ()

    def cut(self, model: nn.Module, example_input: torch.Tensor, config: ConfigLike, ratios: dict[str, float],
            calib: Calibration, blocks: list[str], progress: RepairProgress | None = None) -> dict[str, int]:
        """Prune `model` in place up to `ratios` (or remove `blocks`); returns what was removed per unit.
        Structural methods measure ratios against the current model, mask methods against all weights. A repair
        reports each layer it starts on through `progress` (layers done, layers in all, the layer)."""
        raise NotImplementedError

    def scores(self, model: nn.Module, example_input: torch.Tensor, criterion: str, calib: Calibration,
               seed: int) -> dict[str, torch.Tensor]:
        """Unscaled importance of what this method removes (the global strategy compares them across units):
        one score per channel of each coupled group by default."""
        return channel_scores(model, example_input, criterion, calib, seed)

    def what_changed(self, removed: dict[str, int], blocks: tuple[str, ...]) -> str | None:
        """One line for the Results page on what a run took out (None: the width chart says it all)."""
        return None

    def dynamic_mask(self, scores: torch.Tensor, ratio: float, pattern: PatternLike) -> torch.Tensor:
        """The mask a dynamic schedule recomputes during training (methods whose `schedules` hold "dynamic")."""
        raise PruneLabError(f"the {self.name} method has no dynamic schedule")

    def estimate(self, cost: CostLike, ratios: dict[str, float]) -> dict[str, int]:
        """What `ratios` would leave (core.estimate.CostModel), without cutting: shrink by default."""
        return cost.shrunk(ratios)

    def cost_unit(self, layer: str, out_unit: str | None) -> str | None:
        """The unit whose pruning acts on a layer's cost (its own name for masks, else the output's unit)."""
        return layer if self.mask else out_unit

    def removed_count(self, before: int, step: int) -> int:
        """What a schedule records as removed after a step removed `step` more (masks count the total)."""
        return step if self.mask else before + step

    def step_targets(self, spec: ModelSpec, config: ConfigLike, model: nn.Module, fraction: float,
                     done: list[str]) -> tuple[dict[str, float], list[str]]:
        """One schedule round's ratios at `fraction` of the config's, relative to what the working `model`
        has left (structural cuts shrink the units the next round is measured against)."""
        original = {u.name: u for u in self.units(spec.model, spec.example_input)}
        current = {u.name: u for u in self.units(model, spec.example_input)}
        ratios = {}
        for name, r in config.ratios.items():
            kept = kept_channels(original[name], r * fraction)
            if name in current and kept < current[name].size:
                ratios[name] = ratio_for(current[name], kept)
        return ratios, []

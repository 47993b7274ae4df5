"""N:M semi-structured sparsity: keep the N highest-scoring of every M consecutive input weights. The
share removed is fixed by the pattern (core.methods.base.nm_share), so the method has no ratio slider."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from core.errors import PruneLabError
from core.methods.base import Method, PlanOptions, nm_share
from core.methods.mask import MaskMethod
from core.protocols import ConfigLike, PatternLike
from core.prune.patterns import apply_nm
from core.spec import ModelSpec


class NM(MaskMethod):
    name: ClassVar[str] = "nm"
    help: ClassVar[str] = "keeps N of every M weights · mask: same dense size; faster only on N:M sparse hardware"
    sliders: ClassVar[bool] = False
    needs_ratio: ClassVar[bool] = False
    pattern: ClassVar[str | None] = "nm"
    fixed_share: ClassVar[str] = "N:M sparsity is fixed at 1 - N/M"
    schedules: ClassVar[tuple[str, ...]] = ("oneshot",)

    def validate(self, config: ConfigLike) -> None:
        """Every listed layer gets exactly 1 - N/M."""
        super().validate(config)
        n, m = config.pattern.n, config.pattern.m
        want = nm_share(n, m)
        wrong = sorted(k for k, r in config.ratios.items() if r and abs(r - want) > 1e-6)
        if wrong:
            raise PruneLabError(f"N:M {n}:{m} removes exactly {want:g} of a layer's weights; "
                                f"{', '.join(wrong[:3])} ask for another ratio")

    def schedule_refusal(self, kind: str, dynamic: list[str]) -> str | None:
        if kind == "iterative":
            return f"{self.fixed_share}: an iterative schedule has nothing to grow"
        return Method.schedule_refusal(self, kind, dynamic)

    def plan(self, spec: ModelSpec, ratio: float | None, options: PlanOptions) -> tuple[dict[str, float],
                                                                                        tuple[str, ...]]:
        """1 - N/M for every layer that can hold the pattern; R must be that share or omitted."""
        if options.pattern is None:
            raise PruneLabError("the nm method needs its N:M pattern")
        return nm_ratios(spec, options.pattern, ratio), ()

    def mask_layers(self, model: nn.Module, ratios: dict[str, float], scores: dict[str, torch.Tensor],
                    pattern: PatternLike) -> dict[str, int]:
        return apply_nm(model, list(ratios), scores, pattern.n, pattern.m).removed

    def nm(self, pattern: PatternLike) -> tuple[int, int] | None:
        return pattern.n, pattern.m

    def eligible(self, model: nn.Module, example_input: torch.Tensor) -> list[str]:
        """Layers that can hold a pattern: more than one input channel per group to choose within."""
        modules = dict(model.named_modules())
        return [u.name for u in self.units(model, example_input) if modules[u.name].weight.shape[1] > 1]


def nm_ratios(spec: ModelSpec, pattern: PatternLike, ratio: float | None) -> dict[str, float]:
    """1 - N/M for every Conv2d/Linear whose weight has more than one input channel per group."""
    share = nm_share(pattern.n, pattern.m)
    if ratio is not None and abs(ratio - share) > 1e-6:
        raise PruneLabError(f"N:M {pattern.n}:{pattern.m} removes exactly {share:g} of each layer; "
                            f"--ratio {ratio:g} cannot be met (omit --ratio or change --nm)")
    return dict.fromkeys(NM().eligible(spec.model, spec.example_input), share)

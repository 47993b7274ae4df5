"""Structured channel/filter pruning: physically remove whole channels through Torch-Pruning.

Ratios are keyed by unit name (see core.graph.channel_units); Torch-Pruning's MetaPruner cuts each
coupled group, lowest-scoring channels first, by the scores of any criterion (core.importance) computed
beforehand. Exactly `core.graph.kept_channels` survive, so the dashboard's estimates match what is cut.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from core.errors import PruneLabError
from core.graph import call, channel_units, dependency_graph, kept_channels, never_cut
from core.structure import attention_heads


def _tp_ratio(kept_per_head: int, per_head: int) -> float:
    """The ratio that makes Torch-Pruning keep exactly kept_per_head channels.

    MetaPruner keeps int(per_head * (1 - ratio)) channels; asking for kept + 0.5 makes its floor land
    on kept whatever the float rounding (int(16 * (1 - 0.9)) is 1 but int(10 * (1 - 0.9)) is 0).
    """
    return 1.0 - (kept_per_head + 0.5) / per_head


class _Precomputed:
    """A Torch-Pruning importance that returns scores computed beforehand, looked up by unit name."""

    def __init__(self, scores: dict[str, torch.Tensor], names: dict[nn.Module, str]) -> None:
        self.scores, self.names = scores, names
        self.graph = None  # the pruner's DependencyGraph, set once the pruner exists

    def __call__(self, group) -> torch.Tensor | None:
        for dep, _ in group:
            name = self.names.get(dep.target.module)
            # a unit is named after a layer whose *outputs* it cuts; the same layer's inputs belong elsewhere
            if name in self.scores and self.graph.is_out_channel_pruning_fn(dep.handler):
                return self.scores[name]
        return None


def apply_channel(
    model: nn.Module, ratios: dict[str, float], example_input: torch.Tensor,
    scores: dict[str, torch.Tensor] | None = None, outputs: dict[str, list[int]] | None = None,
) -> dict[str, int]:
    """Cut channels of model in place at the per-unit ratios, lowest scores first (default: L1 group
    magnitude); returns the channels removed per unit. `outputs`, if given, gets the output indices each
    Conv2d/Linear lost, by name."""
    import torch_pruning as tp

    for param in model.parameters():
        param.requires_grad_(True)  # the graph is traced through autograd
    graph = dependency_graph(model, example_input)
    units = {u.name: u for u in channel_units(model, example_input, graph)}
    unknown = sorted(set(ratios) - set(units))
    if unknown:
        raise PruneLabError(f"not prunable channel groups of this model: {', '.join(unknown)}")
    modules = dict(model.named_modules())
    plan, removed = {}, {}
    for name, ratio in ratios.items():
        unit = units[name]
        kept = kept_channels(unit, ratio)
        if kept < unit.size:
            plan[modules[name]] = _tp_ratio(kept // unit.heads, unit.size // unit.heads)
            removed[name] = unit.size - kept
    if not plan:
        return removed
    scorer = (_Precomputed(scores, {m: n for n, m in modules.items()}) if scores is not None
              else tp.importance.GroupMagnitudeImportance(p=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model,
            example_input,
            importance=scorer,
            pruning_ratio=0.0,  # units not in the plan keep every channel
            pruning_ratio_dict=plan,
            ignored_layers=never_cut(model, example_input),
            # fresh dicts every time: MetaPruner mutates its mutable defaults and leaks them across calls
            num_heads=attention_heads(model),
            in_channel_groups={},
            out_channel_groups={},
            channel_groups={},
            forward_fn=call,  # not Torch-Pruning's default, which swallows Ctrl+C (see core.graph.call)
        )
        if isinstance(scorer, _Precomputed):
            scorer.graph = pruner.DG
        for group in pruner.step(interactive=True):
            _record_outputs(group, pruner.DG, modules, outputs)
            group.prune()
    return removed


def _record_outputs(group, graph, modules: dict[str, nn.Module], outputs: dict[str, list[int]] | None) -> None:
    """The output indices of each Conv2d/Linear this Torch-Pruning group is about to remove, by name."""
    if outputs is None:
        return
    names = {m: n for n, m in modules.items()}
    for item in group:
        target = item.dep.target.module
        if isinstance(target, (nn.Conv2d, nn.Linear)) and graph.is_out_channel_pruning_fn(item.dep.handler):
            outputs[names[target]] = sorted(int(i) for i in item.idxs)

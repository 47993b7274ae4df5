"""What can be pruned: the layers (unstructured) and the coupled channel groups (channel), by name.

Channel coupling comes from Torch-Pruning's DependencyGraph: cutting a conv's output channels also cuts
the BatchNorm after it, the next layer's inputs, and every layer joined to it by a residual add. Each
coupled group becomes one "unit" (one slider), named after its first prunable layer in module order.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from core.attention import attention_views
from core.errors import PruneLabError
from core.structure import (
    PRUNABLE,
    attention_heads,
    fixed_width_projections,
    heads_and_width,
    removable_blocks,
)


@dataclass(frozen=True)
class Member:
    """One tensor dimension inside a unit: the output ("out") or input ("in") channels of a module or
    a bare parameter (e.g. a ViT's position embedding)."""

    name: str
    side: str


@dataclass(frozen=True)
class Unit:
    """One slider: a single layer's weights (unstructured) or one coupled channel group (channel)."""

    name: str  # the key in PruneConfig.ratios
    size: int  # weights in the layer, or channels in the group
    members: tuple[Member, ...]
    heads: int = 1  # channel groups inside an attention projection shrink equally per head

    @property
    def label(self) -> str:
        others = len({m.name for m in self.members}) - 1
        return f"{self.name} (+{others} coupled)" if others > 0 else self.name


def classifier(model: nn.Module, example_input: torch.Tensor) -> nn.Module | None:
    """The output layer: the last Linear/Conv whose width equals the model's output width.

    Its output channels are the classes, so channel pruning must leave them alone.
    """
    with torch.no_grad():
        out_dim = model.eval()(example_input).shape[-1]
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == out_dim:
            last = m
        elif isinstance(m, nn.Conv2d) and m.out_channels == out_dim:
            last = m
    return last


# layers the engine understands: it prunes Conv2d/Linear and cuts the norms and embeddings coupled to them
HANDLED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Embedding)


def unsupported_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of the layers with weights that PruneLab leaves alone, in module order: leaf modules
    owning parameters that are none of HANDLED (LSTM/GRU/RNN, Conv1d/Conv3d, transposed convolutions, ...)
    and nn.MultiheadAttention (its packed in-projection). Nothing prunes them; channel groups end at them
    unless Torch-Pruning can cut their inputs along with the layer before (e.g. a Conv1d after a Linear)."""
    found = []
    for name, m in model.named_modules():
        leaf = next(m.children(), None) is None
        owns = next(m.parameters(recurse=False), None) is not None
        if (leaf and owns and not isinstance(m, HANDLED)) or isinstance(m, nn.MultiheadAttention):
            found.append((name, type(m).__name__))
    return found


def unstructured_units(model: nn.Module) -> list[Unit]:
    """Every Conv2d and Linear weight, in module order."""
    return [
        Unit(name, m.weight.numel(), (Member(name, "out"),))
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE)
    ]


def dependency_graph(model: nn.Module, example_input: torch.Tensor):
    """Torch-Pruning's DependencyGraph of model (traced once with example_input)."""
    import torch_pruning as tp

    # TP traces through autograd, and warns about bare parameters it handles fine (pos embeddings)
    with torch.enable_grad(), warnings.catch_warnings(), _tracing(model):
        warnings.simplefilter("ignore")
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, forward_fn=call)


def call(model: nn.Module, example_input: torch.Tensor):
    """How Torch-Pruning runs the model while tracing. Its default tries model(*example_inputs) inside a bare
    `except:`, which swallows Ctrl+C (the run went on, and was recorded done) and traces an unbatched call."""
    return model(example_input)


@contextlib.contextmanager
def _tracing(model: nn.Module):
    """Torch-Pruning failing on a layer it does not know (a GRU feeding on a Linear raises IndexError
    inside get_all_groups) becomes one clear PruneLabError naming the layers PruneLab leaves alone."""
    try:
        yield
    except PruneLabError:
        raise
    except Exception as e:
        odd = ", ".join(f"{n} ({t})" for n, t in unsupported_layers(model)[:5])
        raise PruneLabError(f"channel groups cannot be traced in this model (Torch-Pruning: {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else ''})"
                            + (f"; layers it may not handle: {odd}" if odd else "")
                            + "; unstructured pruning still works") from e


def channel_groups(model: nn.Module, example_input: torch.Tensor, graph=None) -> list[tuple[Unit, object]]:
    """(unit, Torch-Pruning group) for every coupled channel group, sorted by unit name's module order.

    The classifier's outputs (the classes) are never a group.
    """
    graph = graph or dependency_graph(model, example_input)
    modules = dict(model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    names = {m: n for n, m in modules.items()} | {p: n for n, p in model.named_parameters()}
    heads = attention_heads(model)
    found = []
    with _tracing(model):
        groups = list(graph.get_all_groups(ignored_layers=never_cut(model, example_input),
                                           root_module_types=list(PRUNABLE)))
    for group in groups:
        members, n_heads = [], 1
        for dep, _ in group:
            target = dep.target.module
            if target not in names:
                continue  # an internal op (add, reshape, ...), not a tensor anyone stores
            side = "out" if graph.is_out_channel_pruning_fn(dep.handler) else "in"
            members.append(Member(names[target], side))
            if side == "out" and target in heads:
                n_heads = heads[target]
        roots = [m.name for m in members if m.side == "out" and isinstance(modules.get(m.name), PRUNABLE)]
        name = min(roots, key=order.__getitem__)
        members = list(dict.fromkeys(members))  # drop repeats, keep order
        unit = Unit(name, len(group[0].idxs), tuple(members), n_heads)
        if _through_concat(group) and not _cuts_cleanly(model, example_input, unit):
            continue  # Torch-Pruning would cut it inconsistently (see _cuts_cleanly): not offered at all
        found.append((unit, group))
    return sorted(found, key=lambda pair: order[pair[0].name])


def _through_concat(group) -> bool:
    """Whether the group's channels pass through a concatenation (DenseNet, UNet skips, Swin's patch merging)."""
    return any(type(dep.target.module).__name__ == "_ConcatOp" for dep, _ in group)


def _cuts_cleanly(model: nn.Module, example_input: torch.Tensor, unit: Unit) -> bool:
    """Whether cutting half of the unit's channels from a copy leaves a model that runs. Torch-Pruning cuts some
    groups through a concatenation of strided slices inconsistently (Swin's patch merging concatenates four
    slices of the same channels into a LayerNorm four times as wide), and such a unit would be swept and offered
    though it cannot be cut."""
    trial = copy.deepcopy(model)
    for param in trial.parameters():
        param.requires_grad_(True)
    try:
        graph = dependency_graph(trial, example_input)
        root = trial.get_submodule(unit.name)
        idxs = list(range(max(1, unit.size // 2)))
        with _tracing(trial):
            graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs).prune()
        with torch.no_grad():
            trial.eval()(example_input)
    except Exception:  # any failure of the cut copy: the unit is not cuttable
        return False
    return True


def never_cut(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """Layers whose outputs no channel group cuts: the classifier (its outputs are the classes) and attention
    projections whose head width the module's code fixes (core.structure.fixed_width_projections)."""
    head = classifier(model, example_input)
    return ([head] if head else []) + fixed_width_projections(model)


def channel_units(model: nn.Module, example_input: torch.Tensor, graph=None) -> list[Unit]:
    """The coupled channel groups of model (one slider each), in module order of their names."""
    return [unit for unit, _ in channel_groups(model, example_input, graph)]


def neuron_units(model: nn.Module, example_input: torch.Tensor, graph=None) -> list[Unit]:
    """Hidden units of Linear layers, no attention head among them: the channel groups cut by exactly one
    Linear's outputs (an MLP's hidden layer: fc1's outputs with fc2's inputs), or by several Linears' outputs
    that exactly one Linear reads (a gated feed-forward: Llama's gate_proj and up_proj, read by down_proj).
    Residual streams (read by many layers) and attention projections are other methods' business."""
    modules = dict(model.named_modules())
    linear = lambda members: all(isinstance(modules.get(m), nn.Linear) for m in members)  # noqa: E731
    found = []
    for unit in channel_units(model, example_input, graph):
        prunable = [m for m in unit.members if isinstance(modules.get(m.name), PRUNABLE)]
        outs = {m.name for m in prunable if m.side == "out"}
        ins = {m.name for m in prunable if m.side == "in"}
        if unit.heads == 1 and outs and linear(outs) and (len(outs) == 1 or (len(ins) == 1 and linear(ins))):
            found.append(unit)
    return found


def head_units(model: nn.Module) -> list[Unit]:
    """One unit per attention module (core.structure): its size is the head count; cutting heads
    shrinks the q/k/v projections' outputs and the output projection's inputs alike."""
    found = []
    for name, view in attention_views(model).items():
        prefix = f"{name}." if name else ""
        *qkv, out = (prefix + p for p in view.paths)
        members = tuple(dict.fromkeys(Member(p, "out") for p in qkv)) + (Member(out, "in"),)
        found.append(Unit(name, view.groups, members))
    return found


def block_units(model: nn.Module, example_input: torch.Tensor) -> list[Unit]:
    """One unit per removable residual block (core.structure); ratio 1 removes it."""
    # on a copy: finding blocks runs a hooked forward pass, and `model` may be shared (a cached model)
    return [Unit(name, 1, (Member(name, "out"),)) for name in removable_blocks(copy.deepcopy(model), example_input)]


def ratio_for(unit: Unit, kept: int) -> float:
    """The ratio at which `unit` keeps exactly `kept` channels (kept_channels's inverse on its grid)."""
    return round((unit.size - kept) / unit.size, 6)


def kept_channels(unit: Unit, ratio: float) -> int:
    """Channels a unit keeps at ratio: round(ratio * width) removed per head, at least one kept."""
    per_head = unit.size // unit.heads
    removed = min(round(ratio * per_head), per_head - 1)
    return (per_head - removed) * unit.heads


def emptied(found: list[Unit], ratios: dict[str, float]) -> list[str]:
    """Units whose ratio, as asked, would remove all of them (every weight, channel of a head, or head):
    the engine keeps one instead, and runs report these names so the clamp is never silent."""
    out = []
    for u in found:
        per = u.size // u.heads
        if ratios.get(u.name, 0.0) > 0 and round(ratios[u.name] * per) >= per:
            out.append(u.name)
    return out


def layer_widths(model: nn.Module, units: list[Unit], ratios: dict[str, float]) -> list[dict]:
    """Widths before and after pruning `units` at `ratios` (no cutting), in module order: the output
    channels of every Conv2d/Linear (kind "channels"), and for every attention module its head count
    ("heads") and its query/key width per head ("head dim"). Units are channel groups (a head-split
    group narrows every head) or attention modules (head units: whole heads go)."""
    out_unit = {m.name: u for u in units for m in u.members if m.side == "out"}
    kept = {u.name: kept_channels(u, ratios.get(u.name, 0.0)) / u.size for u in units}  # share each unit keeps

    def after(name: str, before: int) -> int:
        unit = out_unit.get(name)
        return round(before * kept[unit.name]) if unit else before

    rows = []
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            before = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            rows.append({"layer": name, "kind": "channels", "before": before, "after": after(name, before)})
        elif (heads := heads_and_width(module)) is not None:
            n, width = heads
            n_after = round(n * kept[name]) if name in kept else n
            width_after = after(f"{name}.q", width) if hasattr(module, "q") else width
            rows += [{"layer": f"{name} heads", "kind": "heads", "before": n, "after": n_after},
                     {"layer": f"{name} head dim", "kind": "head dim", "before": width // n,
                      "after": width_after // n_after}]
    return rows



"""Refusing unit names a model lacks: a config (typed, imported, replayed or allocated) may only name the units or
blocks its method finds in the model (core.methods' units), whichever front end it comes through."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.config import PruneConfig
from core.errors import PruneLabError
from core.spec import ModelSpec


def check_units(spec: ModelSpec, config: PruneConfig, known: Callable[[str], Iterable[str]] | None = None,
                label: str | None = None, hint: str = "") -> None:
    """PruneLabError naming every unit or block of `config` the model does not have, and the ones it has; for a
    recipe, every stage's units too, and none inside a block an earlier stage removes (that would fail only when the
    run reached the stage).

    known: a method's unit names by method name if the caller has them already (the dashboard's cached cost models),
    else they are listed from the model; label: how the model is called in the message (default its name); hint:
    where the front end lists the units, appended to the message."""
    stages = config.stages()
    for k, stage in enumerate(stages, 1):
        names = set(known(stage.method)) if known is not None else {
            u.name for u in stage.technique.units(spec.model, spec.example_input)}
        _check_names(stage, names, f"{f'stage {k}: ' if k > 1 else ''}{label or spec.name}", hint)
    if clash := inside_removed(stages):
        k, name, block, j = clash[0]
        raise PruneLabError(f"stage {k} ({stages[k - 1].method}) names {name}, inside {block}, which stage {j} "
                            f"({stages[j - 1].method}) removes: plan stage {k} on the model stage {j} leaves")


def inside_removed(stages: list[PruneConfig]) -> list[tuple[int, str, str, int]]:
    """(stage k, unit, block, stage j) for every unit a stage cuts (ratio above 0, or a block it removes) that lies
    inside a block an earlier stage j removes: by then that block is gone, and the run would stop at stage k."""
    found, removed = [], {}  # removed: block -> the stage that removes it
    for k, stage in enumerate(stages, 1):
        for name in sorted({u for u, r in stage.ratios.items() if r > 0} | set(stage.remove_blocks)):
            block = next((b for b in removed if name == b or name.startswith(b + ".")), None)
            if block is not None:
                found.append((k, name, block, removed[block]))
        removed |= {block: k for block in stage.remove_blocks}
    return found


def _check_names(config: PruneConfig, names: set[str], label: str, hint: str) -> None:
    unknown = sorted((set(config.ratios) | set(config.remove_blocks)) - names)
    if unknown:
        raise PruneLabError(f"{label} has no {config.method} layer(s) named {', '.join(unknown)} "
                            f"(it has: {', '.join(sorted(names)) or 'none'}){hint}")

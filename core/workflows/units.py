"""Refusing unit names a model lacks: a config (typed, imported, replayed or allocated) may only name the units or
blocks its method finds in the model (core.methods' units), whichever front end it comes through."""

from __future__ import annotations

from collections.abc import Iterable

from core.config import PruneConfig
from core.errors import PruneLabError
from core.spec import ModelSpec


def check_units(spec: ModelSpec, config: PruneConfig, known: Iterable[str] | None = None,
                label: str | None = None, hint: str = "") -> None:
    """PruneLabError naming every unit or block of `config` the model does not have, and the ones it has.

    known: the method's unit names if the caller has them already (the dashboard's cached cost model), else they
    are listed from the model; label: how the model is called in the message (default its name); hint: where the
    front end lists the units, appended to the message."""
    names = set(known) if known is not None else {u.name for u in config.technique.units(spec.model,
                                                                                          spec.example_input)}
    unknown = sorted((set(config.ratios) | set(config.remove_blocks)) - names)
    if unknown:
        raise PruneLabError(f"{label or spec.name} has no {config.method} layer(s) named {', '.join(unknown)} "
                            f"(it has: {', '.join(sorted(names)) or 'none'}){hint}")

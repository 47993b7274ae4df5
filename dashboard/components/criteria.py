"""Which importance criteria a page offers for a model: those that need data (taylor, fisher, activation, apoz —
core.importance Criterion.uses_data) only for a model that has a data set. A criterion chosen on another model is
not carried over when the new model cannot use it: the widget falls back to the first one offered."""

from __future__ import annotations

from collections.abc import Iterable

from core.importance import REGISTRY
from dashboard import state


def offered(criteria: Iterable[str], has_data: bool) -> list[str]:
    """criteria, without those needing data when the model has none."""
    return [c for c in criteria if has_data or not REGISTRY[c].uses_data]


def keep_offered(key: str, options: list[str]) -> None:
    """Before the widget under key is drawn: a value it no longer offers becomes its first option."""
    state.keep_choice(key, options)


def note(has_data: bool) -> str:
    """A help line saying why data criteria are missing ("" when they are offered)."""
    if has_data:
        return ""
    needing = ", ".join(c for c, crit in REGISTRY.items() if crit.uses_data)
    return f" Not offered for this model (it has no data set): {needing}."

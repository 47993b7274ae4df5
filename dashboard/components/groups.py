"""Units grouped by stage or block, and the Tune page's search filter: pure functions of unit names.

A group is a name's stage (`layer3` of `layer3.2.conv2`) or, where the first part is a container of
numbered blocks, its block (`blocks.7` of `blocks.7.attn`, `features.3` of `features.3.conv.0`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def group_key(name: str) -> str:
    """The stage or block a unit belongs to: the first dotted part, or the first two when the first is a
    plain container name (no digit) followed by a block index."""
    parts = name.split(".")
    if len(parts) > 1 and parts[1].isdigit() and not any(c.isdigit() for c in parts[0]):
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def group_names(names: Iterable[str]) -> dict[str, list[str]]:
    """Names by group, groups in the order they first appear, names in their given order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_key(name), []).append(name)
    return groups


def filter_names(names: Iterable[str], query: str) -> list[str]:
    """The names a search shows: all for an empty query; a group's units when the query is a group's name
    (case-insensitive: `blocks.1` is not also `blocks.10`); otherwise the names containing every
    whitespace-separated term of the query (case-insensitive)."""
    names = list(names)
    terms = query.lower().split()
    if not terms:
        return names
    exact = [n for n in names if group_key(n).lower() == query.strip().lower()]
    if exact:
        return exact
    return [n for n in names if all(t in n.lower() for t in terms)]


def mean_ratio(ratios: Mapping[str, float], names: Iterable[str]) -> float:
    """The mean ratio of `names` (0 for none)."""
    values = [ratios.get(n, 0.0) for n in names]
    return sum(values) / len(values) if values else 0.0


def settable(selected: Iterable[str], locked: Iterable[str]) -> list[str]:
    """The selected names a bulk set changes: all but the locked ones, in selection order."""
    held = set(locked)
    return [n for n in selected if n not in held]

"""What the schedules benchmark measured, for the strategy helper: load core/schedule_evidence.json and answer
"how did this schedule do against one-shot on the models of this family?".

The file is written by `python -m bench.schedules` (unstructured pruning, the same fine-tuning budget for every
schedule). Per model family and model, each measured cell (scope, ratio, budget in epochs) holds every schedule's
mean change vs one-shot over the seeds: positive = better than one-shot, whichever way the metric is better; in
points (100 x a share such as accuracy) or in the metric's own units (a language model's perplexity), as `unit`
says.

A schedule kind ("iterative", "dynamic") is judged by the variant Tune applies for it — the default
core.config.Schedule(kind) — and only that one: a better-tuned variant measured beside it says nothing about what
the helper's Apply would run. The verdict is read at each model's shortest measured budget (the benchmark's grid);
a longer budget where the schedule did better is reported beside it (gradual pruning needs time to recover between
cuts). A missing, unreadable or malformed file is no evidence, never an error: the guide's answer then stands.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from core.config import Schedule

PATH = Path(__file__).with_name("schedule_evidence.json")  # committed beside this module; the bench rewrites it
SOURCE = "bench/schedules"


@dataclass(frozen=True)
class Figure:
    """One measured change of a schedule vs one-shot on one model, scope and ratio."""

    model: str
    family: str
    scope: str
    ratio: float  # share of the weights removed
    kind: str
    label: str  # the benchmark's row label, e.g. "iterative (3 rounds)"
    change: float  # mean vs one-shot: positive = better than one-shot
    unit: str  # "points" (100 x an accuracy-like share) or the metric's own name ("perplexity")
    seeds: int
    epochs: int  # the fine-tuning budget every schedule of the cell spent

    def amount(self) -> str:
        """'3.4 points below one-shot', '0.12 perplexity better than one-shot'."""
        if self.unit == "points":
            return f"{abs(self.change):.1f} points {'below' if self.change < 0 else 'above'} one-shot"
        return f"{abs(self.change):.3g} {self.unit} {'worse' if self.change < 0 else 'better'} than one-shot"

    def where(self) -> str:
        """'on mnist-resnet (CNN) at 90% unstructured (global scope, 3 epochs of fine-tuning)'."""
        family = self.family.upper() if self.family in ("cnn", "mlp") else self.family
        return (f"on {self.model} ({family}) at {self.ratio:.0%} unstructured ({self.scope} scope, {self.epochs} "
                "epochs of fine-tuning)")

    def cite(self) -> str:
        return f"({SOURCE}, {self.seeds} seed{'s' if self.seeds != 1 else ''})"


def load(path: Path | None = None) -> dict:
    """The evidence file as a dict; {} when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((path or PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def figures(family: str, kind: str, path: Path | None = None) -> list[Figure]:
    """The changes vs one-shot of schedule `kind` (its default variant) on every measured model of `family`, at that
    model's highest measured ratio, both scopes, every budget. [] without evidence (a malformed file counts as
    none)."""
    models = load(path).get("families", {})
    models = models.get(family, {}) if isinstance(models, dict) else {}
    try:
        return [f for model, entry in models.items() for f in _highest(model, family, kind, entry)]
    except (AttributeError, KeyError, TypeError, ValueError):
        return []


def _highest(model: str, family: str, kind: str, entry: dict) -> list[Figure]:
    """One model's figures for kind at its highest measured ratio (any scope, any budget)."""
    found = [_figure(model, family, kind, entry, cell) for cell in entry["cells"]]
    found = [f for f in found if f is not None]
    top = max((f.ratio for f in found), default=None)
    return [f for f in found if f.ratio == top]


def _verdict(found: list[Figure]) -> list[Figure]:
    """The figures at each model's shortest measured budget: the ones a verdict is read from."""
    shortest = {f.model: min(g.epochs for g in found if g.model == f.model) for f in found}
    return [f for f in found if f.epochs == shortest[f.model]]


def _figure(model: str, family: str, kind: str, entry: dict, cell: dict) -> Figure | None:
    """The figure of kind's default variant in one cell, or None if that variant was not measured there."""
    default = asdict(Schedule(kind))
    for label, row in cell["changes"].items():
        # a field the row does not record came later (Schedule.last_round): that run had its default
        if row["kind"] == kind and {**default, **row["settings"]} == default:
            change, ratio = _number(row["change"]), _number(cell["ratio"])
            return Figure(model, family, str(cell["scope"]), ratio, kind, str(label), change, str(entry["unit"]),
                          len(row.get("seeds", cell["seeds"])),  # the seeds it was paired with one-shot on
                          int(_number(cell.get("epochs", 3))))  # files before budgets were recorded: the grid's 3
    return None


def _number(value: object) -> float:
    """A finite JSON number; anything else (text, true, NaN) makes the file malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


def worst(family: str, kind: str, path: Path | None = None) -> Figure | None:
    """kind's lowest change vs one-shot over the family's measured models (highest ratio, both scopes, each model's
    shortest budget), or None."""
    return min(_verdict(figures(family, kind, path)), key=lambda f: f.change, default=None)


def longer(figure: Figure, path: Path | None = None) -> Figure | None:
    """kind's best lead over one-shot on figure's model, scope and ratio with a longer budget than figure's, if it
    beat one-shot there; else None."""
    same = [f for f in figures(figure.family, figure.kind, path) if (f.model, f.scope, f.ratio) ==
            (figure.model, figure.scope, figure.ratio) and f.epochs > figure.epochs and f.change > 0]
    return max(same, key=lambda f: f.change, default=None)

"""Tables of the Experiments page, built from core.store records: the experiment list, a config diff and two
experiments' headline numbers side by side. Pure functions of their data (no Streamlit calls)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from core.metric_keys import ACCURACY, task_metrics
from core.store import Experiment, Unreadable

# (column of the store, label) of the headline numbers, as the list and the comparison show them
NUMBERS = (("params", "params"), ("flops", "FLOPs"), ("size_bytes", "size (bytes)"),
           ("latency_ms", "latency b1 (ms)"), ("accuracy", "accuracy"))


def _pruned(exp: Experiment) -> dict:
    pruned = (exp.metrics or {}).get("pruned")
    return pruned if isinstance(pruned, dict) else {}


def task_value(exp: Experiment, key: str) -> float | None:
    """The pruned model's task measure `key` (e.g. embedding fidelity, a language model's perplexity), or None."""
    value = _pruned(exp).get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def task_columns(experiments: list[Experiment]) -> list[str]:
    """The task measures besides accuracy (a store column) that some experiment reports, by core.metric_keys'
    registry: "perplexity" for language models, "fidelity" for sentence encoders."""
    keys = [t.key for e in experiments for t in task_metrics(_pruned(e)) if t.key != ACCURACY]
    return [k for k in dict.fromkeys(keys) if any(task_value(e, k) is not None for e in experiments)]


def matches(exp: Experiment, text: str) -> bool:
    """Whether the id contains text (case-insensitive; empty text matches everything)."""
    return text.strip().lower() in exp.id.lower()


def table(experiments: list[Experiment]) -> pd.DataFrame:
    """One row per experiment: id, method (a recipe's stages in order), criterion, status, the numbers, created
    (UTC); a column for each other task measure (perplexity, fidelity) only when some experiment reports it."""
    extra = task_columns(experiments)
    rows = []
    for e in experiments:
        row: dict[str, Any] = {"id": e.id, "method": e.config.methods_text(), "criterion": e.criterion,
                               "status": e.status}  # a recipe's method: every stage's, "layer → unstructured"
        row |= {label: getattr(e, key) for key, label in NUMBERS}
        row |= {key: task_value(e, key) for key in extra}
        row["created"] = e.created_at[:19].replace("T", " ")
        rows.append(row)
    columns = ["id", "method", "criterion", "status", *(label for _, label in NUMBERS), *extra, "created"]
    return pd.DataFrame(rows, columns=columns)


def unreadable(rows: list[Unreadable]) -> pd.DataFrame:
    """Records that cannot be read back: id, status, created, reason."""
    return pd.DataFrame([{"id": u.id, "status": u.status, "created": (u.created_at or "")[:19].replace("T", " "),
                          "reason": u.reason} for u in rows], columns=["id", "status", "created", "reason"])


def shown(value: Any) -> str:
    """A config value as text (the diff's columns mix numbers, flags and lists)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def diff_frame(rows: list[dict[str, Any]], a: str, b: str, changed_only: bool) -> pd.DataFrame:
    """core.store diff rows as a table: kind, name, the value in a and in b (headers "A: <id>", "B: <id>")."""
    kept = [r for r in rows if r["changed"] or not changed_only]
    ca, cb = column(a, "A"), column(b, "B")
    return pd.DataFrame([{"kind": r["kind"], "name": r["name"], ca: shown(r["a"]), cb: shown(r["b"]),
                          "changed": r["changed"]} for r in kept],
                        columns=["kind", "name", ca, cb, "changed"])


def column(exp_id: str, side: str) -> str:
    """The header of one side of a comparison ("A: <id>"): distinct even if both sides are the same run."""
    return f"{side}: {exp_id}"


def highlight_changed(frame: pd.DataFrame) -> Any:
    """The diff table styled: changed rows on a yellow background (a pandas Styler, which st.dataframe draws)."""
    def row_style(row: pd.Series) -> list[str]:
        return ["background-color: #fff3bf" if row["changed"] else ""] * len(row)

    return frame.style.apply(row_style, axis=1)


def side_by_side(a: Experiment, b: Experiment) -> pd.DataFrame:
    """Status and headline numbers of two experiments (A and B), with B / A for the numbers both have."""
    extra = task_columns([a, b])
    keys = [*NUMBERS, *((key, key) for key in extra)]
    ca, cb = column(a.id, "A"), column(b.id, "B")
    rows = [{"metric": "status", ca: a.status, cb: b.status, "B / A": ""}]
    for key, label in keys:
        va, vb = (task_value(e, key) if key in extra else getattr(e, key) for e in (a, b))
        ratio = vb / va if va and vb is not None else None
        rows.append({"metric": label, ca: _number(va), cb: _number(vb),
                     "B / A": "" if ratio is None else f"{ratio:.3f}"})
    return pd.DataFrame(rows, columns=["metric", ca, cb, "B / A"])


def _number(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"

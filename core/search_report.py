"""A search's record in its folder: search.json (the spec, every trial with its config, figures, where they were
measured and its status or message; rewritten atomically after every trial, so a killed search keeps what
finished), pareto.csv (the non-dominated trials on each cost axis) and pareto.html (a plotly chart of them).

A trial is a plain dict (JSON as written): key, target, strategy, seed, status (pending, done, failed,
cancelled), message, id (its store record), folder, config, the headline figures of its run (params, flops,
size_bytes, the task measure; run_latency_ms: the run's own timing, where it ran), where (the host and process
the run measured them on), attempts, and latency_ms: onnxruntime batch-1 median re-measured at the end of the
search on the driver, every trial interleaved with the others (latency_where says so)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import parse_json, read_json_file
from core.errors import PruneLabError
from core.files import write_atomic
from core.metric_keys import ACCURACY, FLOPS, PARAMS, PERPLEXITY, SIZE_BYTES, TaskMetric
from core.processes import alive, process_start
from core.search_spec import SearchSpec, Trial
from core.store import PARETO_AXES
from core.store_compare import judged_by, pareto_front

SEARCH_FILE = "search.json"
PARETO_FILE = "pareto.csv"
CHART_FILE = "pareto.html"
DRIVER = "driver host"  # where the interleaved latency of every trial is measured
STATUSES = ("running", "done", "cancelled", "interrupted")  # of the search as a whole
FIGURES = (PARAMS, FLOPS, SIZE_BYTES, ACCURACY, PERPLEXITY)  # a run's figures a trial keeps


@dataclass(frozen=True)
class _Point:
    """A done trial as core.store_compare.pareto_front reads a record: its costs and its task measure."""

    key: str
    flops: float | None
    size_bytes: float | None
    latency_ms: float | None
    accuracy: float | None
    metrics: dict


def pending(trial: Trial) -> dict[str, Any]:
    """A trial's entry before it has run."""
    return {"key": trial.key, "target": trial.target, "strategy": trial.strategy, "seed": trial.seed,
            "status": "pending", "message": None, "id": None, "folder": None, "config": None, "where": None,
            "attempts": 0, **dict.fromkeys(FIGURES), "run_latency_ms": None, "latency_ms": None,
            "latency_where": None}


@dataclass
class SearchReport:
    """The search as recorded: see the module docstring. folder is the search's own folder under the workspace's
    runs; the trial run folders lie inside it; id (the folder's name) is the store parent of every trial."""

    id: str
    folder: Path
    spec: SearchSpec
    executor: str
    status: str = "running"
    trials: list[dict[str, Any]] = field(default_factory=list)
    pareto: dict[str, list[str]] = field(default_factory=dict)  # axis -> keys of the front, by that cost
    baseline_latency_ms: float | None = None  # measured beside the trials on the driver
    model_fingerprint: str | None = None
    driver: dict[str, Any] = field(default_factory=lambda: driver_process())  # tells a killed search (read_search)

    def trial(self, key: str) -> dict[str, Any]:
        return next(t for t in self.trials if t["key"] == key)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "executor": self.executor, "spec": self.spec.to_dict(),
                "model_fingerprint": self.model_fingerprint, "trials": self.trials, "pareto": self.pareto,
                "baseline_latency_ms": self.baseline_latency_ms, "latency_where": DRIVER, "driver": self.driver}

    def save(self) -> None:
        """search.json, atomically (a reader or a kill never sees half of it)."""
        write_atomic(self.folder / SEARCH_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    def done(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "done"]

    def find_fronts(self) -> TaskMetric | None:
        """The Pareto front of the done trials on each cost axis (a trial without that figure is left out);
        returns the task measure they are judged by (None when no trial is done)."""
        points = [_point(t) for t in self.done()]
        if not points:
            self.pareto = {axis: [] for axis in PARETO_AXES}
            return None
        metric = judged_by(points)  # type: ignore[arg-type]  (duck-typed like a store record)
        self.pareto = {}
        for axis in PARETO_AXES:
            usable = [p for p in points if getattr(p, axis) is not None and _value(p, metric) is not None]
            self.pareto[axis] = [p.key for p in pareto_front(usable, axis, metric)]  # type: ignore[arg-type]
        return metric

    def write_fronts(self, metric: TaskMetric | None) -> list[Path]:
        """pareto.csv and (when any trial is done) pareto.html; the paths written."""
        columns = ["axis", "key", "id", "target", "strategy", "seed", metric.key if metric else "accuracy",
                   "flops", "size_bytes", "latency_ms"]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for axis, keys in self.pareto.items():
            for key in keys:
                t = self.trial(key)
                writer.writerow([axis, *(t.get(c) for c in columns[1:])])
        write_atomic(self.folder / PARETO_FILE, text.getvalue().encode())
        if metric is None:
            return [self.folder / PARETO_FILE]
        write_atomic(self.folder / CHART_FILE, chart_html(self, metric).encode())
        return [self.folder / PARETO_FILE, self.folder / CHART_FILE]


def driver_process() -> dict[str, Any]:
    """This process: host, pid and start time (with the pid, it tells a reused pid apart)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": process_start(os.getpid())}


def read_search(folder: Path) -> dict[str, Any]:
    """A search's search.json as written; a search still 'running' whose driver process on this host is gone
    reads as 'interrupted' (killed: its finished trials are all there, recorded as they landed)."""
    path = Path(folder) / SEARCH_FILE
    data = parse_json(read_json_file(path, "search record"), str(path))
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise PruneLabError(f"{path} is not a PruneLab search record")
    driver = data.get("driver") or {}
    if data.get("status") == "running" and driver.get("host") == socket.gethostname() \
            and isinstance(driver.get("pid"), int) and not alive(driver["pid"], driver.get("proc_start")):
        data["status"] = "interrupted"
    return data


def _point(t: dict[str, Any]) -> _Point:
    pruned = {k: t[k] for k in (ACCURACY, PERPLEXITY) if t.get(k) is not None}
    return _Point(t["key"], t["flops"], t["size_bytes"], t["latency_ms"], t["accuracy"], {"pruned": pruned})


def _value(p: _Point, metric: TaskMetric) -> float | None:
    return p.metrics["pruned"].get(metric.key)


AXIS_TITLES = {"flops": "FLOPs / example", "size_bytes": "fp32 size (bytes)",
               "latency_ms": f"latency b1 median (ms, {DRIVER}, interleaved)"}


def chart_html(report: SearchReport, metric: TaskMetric) -> str:
    """One plotly chart per cost axis: every done trial coloured by strategy, the front joined by a line. The
    plotly library is inlined (the file opens offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(PARETO_AXES), subplot_titles=[AXIS_TITLES[a] for a in PARETO_AXES])
    scale = 100 if metric.percent else 1
    for col, axis in enumerate(PARETO_AXES, start=1):
        for strategy in report.spec.strategies:
            ts = [t for t in report.done() if t["strategy"] == strategy and t.get(axis) is not None]
            fig.add_trace(go.Scatter(x=[t[axis] for t in ts], y=[scale * t[metric.key] for t in ts],
                                     mode="markers", name=strategy, legendgroup=strategy, showlegend=col == 1,
                                     text=[t["key"] for t in ts], marker={"size": 10},
                                     hovertemplate="%{text}<br>%{x:,.4g}<br>%{y:.4g}<extra></extra>"), row=1, col=col)
        front = [report.trial(k) for k in report.pareto.get(axis, [])]
        fig.add_trace(go.Scatter(x=[t[axis] for t in front], y=[scale * t[metric.key] for t in front],
                                 mode="lines", name="Pareto front", legendgroup="front", showlegend=col == 1,
                                 line={"color": "#111", "shape": "hv"}, hoverinfo="skip"), row=1, col=col)
    better = "higher" if metric.higher_is_better else "lower"
    fig.update_yaxes(title_text=f"{metric.label}{' (%)' if metric.percent else ''}, {better} is better", col=1)
    fig.update_layout(title=f"Search {report.id}: {report.spec.model}", height=480, width=1400)
    return fig.to_html(include_plotlyjs=True, full_html=True)

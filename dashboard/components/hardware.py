"""Hardware-aware controls of the Tune page: measure the width-latency table, snap or mark widths."""

from __future__ import annotations

import streamlit as st

from core import hardware
from core.hardware import LatencyTable
from core.workflows import SolveRequest
from dashboard import cache, jobs, state
from dashboard.components import messages
from dashboard.components.text import md


def table(name: str, batch: int) -> LatencyTable | None:
    """The measured table of this model at `batch`, if one is on disk (nothing is measured here). Every
    Tune rerun asks for it, so the parsed table is kept in memory until the file changes."""
    path = hardware.cache_path(cache.spec(name), batch, 1)
    return cache.latency_table(str(path), path.stat().st_mtime_ns) if path.exists() else None


def _build(name: str, batch: int) -> None:
    jobs.start("lut", name, batch=batch)


def panel(name: str) -> LatencyTable | None:
    """Toggle, batch choice and table status; returns the measured table (or None)."""
    c1, c2, c3 = st.columns([1.3, 0.8, 2.4])
    c1.toggle("Hardware-aware widths", key=state.HW_AWARE,
              help="Sliders offer only widths this CPU runtime is fast at (measured, not assumed).")
    batch = c2.selectbox("Latency batch", cache.baseline(name).metrics["latency_batches"], key=state.HW_BATCH)
    _, error = jobs.panel("lut", name)
    if error:
        st.error(f"Timing the layer widths failed: {md(error)}")
    measured = table(name, batch)
    if measured is None:
        c3.button("Measure each layer's latency by width (about 15 s)", key=state.BUILD_LUT,
                  disabled=jobs.running("lut", name), on_click=_build, args=(name, batch))
    else:
        c3.caption(f"Measured ({md(measured.runtime)}): this CPU runs channels in blocks of {measured.round_to()}; "
                   "slider labels say whether a width is fast.")
    return measured


def solve_in_background(name: str, request: SolveRequest, scores, lut: LatencyTable) -> None:
    """Hardware-aware solving builds and times candidate models (tens of seconds): a background job
    (core.job_tasks' hw-solve, which calls core.workflows.solve as the CLI does)."""
    jobs.start("hw-solve", name, request=request, scores=scores, lut=lut, base=cache.baseline(name))


def apply_solution(name: str) -> None:
    """Before the sliders and the hardware-aware toggle are drawn: put a finished hardware-aware solution into
    them (once), through the one slider writer (snapped to the measured table's fast widths)."""
    result, error = jobs.panel("hw-solve", name)
    if error:
        messages.say(state.SOLVER_MESSAGE, name, "error", error)
    job = jobs.current("hw-solve", name)
    batch = state.get(state.HW_BATCH) or cache.baseline(name).metrics["latency_batches"][0]
    measured = table(name, batch)
    if not result or job is None or measured is None or state.hw_solution_applied(job.job_id):
        return
    state.mark_hw_solution_applied(job.job_id)
    state.set_hw_aware(True)
    tune = state.TuneState(name, "channel")
    units = {u.name: u for u in cache.cost_model(name, "channel").units}
    tune.set_sliders(result["ratios"], units, measured)
    tune.show_mean(list(units), hw=True)
    best = max((r for r in result["report"] if "speedup" in r), key=lambda r: r["speedup"], default=None)
    detail = f" — measured {best['speedup']:.2f}x faster than the baseline" if best else ""
    verdict = "met" if result["met"] else "NOT met"
    messages.say(state.SOLVER_MESSAGE, name, "success" if result["met"] else "warning",
                 f"hardware-aware allocation: target {verdict}{detail}. Sliders filled.")

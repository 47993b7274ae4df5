"""The Tune page's post-training repair control (core.repair_layers, core.repair_structured): which repair the
chosen method takes, and how many calibration examples it (and the criteria) look at."""

from __future__ import annotations

import streamlit as st

from core.config import PruneConfig
from core.methods import Method
from dashboard import state

HELP = {
    "none": "the kept weights stay as they are",
    "sparsegpt": "SparseGPT: chooses the masks itself and updates the kept weights so each layer's outputs on the "
                 "calibration data move least (the criterion is not used)",
    "lstsq": "least squares: masks — the exact best kept weights for the criterion's masks; channels, neurons, "
             "heads — the layers whose inputs were cut are refitted to the unpruned outputs",
    "bias": "FLAP's compensation: the layers whose inputs were cut keep each output's mean (bias only)",
}


def control(technique: Method, has_data: bool) -> tuple[str, int]:
    """(repair, calibration examples): a select box of the repairs the method takes, and, once one is chosen,
    the calibration size. Without data the repair would fit noise: only "none" is offered."""
    options = ["none", *technique.repairs] if has_data else ["none"]
    state.keep_choice(state.REPAIR, options)  # a repair of another method falls back to none
    c1, c2 = st.columns([3, 1])
    repair = c1.selectbox("Repair (no training)", options, key=state.REPAIR,
                          help="\n".join(f"- **{r}**: {HELP[r]}" for r in options)
                          + ("" if has_data else "\n\nRepair needs calibration data; this model has none."))
    if repair == "none":
        return repair, PruneConfig.calibration_samples
    c1.caption(HELP[repair])
    samples = c2.number_input("Calibration examples", 1, 100_000, PruneConfig.calibration_samples,
                              key=state.REPAIR_CALIB, help="training examples the repair (and the criterion) "
                                                           "look at; more fit better and take longer")
    return repair, int(samples)

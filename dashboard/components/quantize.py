"""The Tune page's "Quantise to int8 after the last stage" checkbox: a run with it ticked quantises the pruned model's
ONNX with onnxruntime after the last stage (core.config.PruneConfig.quantize, core.experiment) and measures that
file. It returns the value the config takes."""

from __future__ import annotations

import streamlit as st

from dashboard import state

HELP = ("After the last stage (and its fine-tuning), the pruned model's ONNX file is quantised to int8 by "
        "onnxruntime (static quantisation: per-channel int8 weights, activations calibrated on training inputs) and "
        "saved as model.int8.onnx beside it. Its size, its batch latency and its accuracy are measured on that int8 "
        "file in onnxruntime, not estimated; Results shows them as the last step. Needs the ONNX export to succeed.")


def control() -> str:
    """'int8' when the checkbox is ticked, else 'none' (core.config.QUANTIZE)."""
    ticked = st.checkbox("Quantise to int8 after the last stage", key=state.QUANTIZE, help=HELP)
    return "int8" if ticked else "none"

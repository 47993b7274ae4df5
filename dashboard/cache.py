"""Every Streamlit cache in the app lives here, so what is shared between sessions is in one place.

Cached objects are shared by all users: the model in a ModelSpec is never modified (the engine prunes
deep copies), and cached dicts are treated as read-only by the pages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core import experiment, importance, models
from core.estimate import CostModel, build_cost_model
from core.metrics import layer_summary
from core.models import ModelSpec
from core.prune import calibration


@st.cache_resource(show_spinner="Loading the model…")
def spec(name: str) -> ModelSpec:
    return models.load(name)


@st.cache_data(show_spinner="Measuring the baseline: ONNX export, accuracy, onnxruntime latency…")
def baseline(name: str) -> experiment.Baseline:
    return experiment.baseline(spec(name))


@st.cache_resource(show_spinner="Tracing layers and channel coupling…")
def cost_model(name: str, method: str) -> CostModel:
    s = spec(name)
    return build_cost_model(s.model, s.example_input, method)


@st.cache_data(show_spinner="Scoring channels…")
def importance_scores(name: str, method: str, criterion: str, samples: int = 512, seed: int = 0
                      ) -> dict[str, np.ndarray]:
    """Heatmap rows; raises core.importance.NotApplicable (a PruneLabError) when the criterion has none."""
    s = spec(name)
    return importance.heatmap(s.model, s.example_input, method, criterion, calibration(s, samples, seed), seed)


@st.cache_data
def layers(name: str) -> pd.DataFrame:
    s = spec(name)
    return pd.DataFrame(layer_summary(s.model, s.example_input))

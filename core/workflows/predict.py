"""What the engine predicts before anything is pruned: the accuracy a sensitivity sweep predicts for a set of
ratios, and the latency a width-latency table estimates. The Tune page shows both; `prunelab allocate` prints the
predicted drop of the ratios it writes; a run records the prediction beside what it measured."""

from __future__ import annotations

import pandas as pd

from core.allocate import drop_curves, latency_estimate, predicted_drop
from core.estimate import CostModel
from core.metric_keys import PERPLEXITY_METRIC, TEST_ACCURACY, sweep_metric

PREDICTION_METHOD = ("baseline test accuracy minus the sum of single-unit drops of the sensitivity sweep; "
                     "before fine-tuning")


def predict_accuracy(table: pd.DataFrame | None, ratios: dict[str, float], base_accuracy: float | None = None,
                     sweep_key: str | None = None, base_perplexity: float | None = None) -> dict | None:
    """The prediction a run records (None without a sweep table): the drop (accuracy points, 0..1) is the sum of
    each unit's measured single-unit drop at its ratio; accuracy is the baseline's minus it (None if unknown).
    A language model's table (next-token accuracy) adds its perplexity increase, summed the same way, and the
    perplexity it predicts (the baseline's plus it, None if the baseline is not given)."""
    if table is None:
        return None
    drop = predicted_drop(drop_curves(table, TEST_ACCURACY.change_name), ratios)
    accuracy = None if base_accuracy is None else max(0.0, base_accuracy - drop)
    prediction = {"accuracy": accuracy, "drop": drop, "sweep": sweep_key, "method": PREDICTION_METHOD}
    if sweep_metric(table.columns) is PERPLEXITY_METRIC:
        increase = predicted_drop(drop_curves(table, PERPLEXITY_METRIC.change_name), ratios)
        prediction[PERPLEXITY_METRIC.change_name] = increase
        prediction[PERPLEXITY_METRIC.key] = None if base_perplexity is None else base_perplexity + increase
    return prediction


def estimate_latency(cost_model: CostModel, base_ms: float, ratios: dict[str, float], hardware=None) -> float:
    """Estimated latency (ms, not below 0) of `ratios`: the baseline's measured latency minus what the width table
    says each unit saves (hardware), or scaled by the share of FLOPs kept — the solver's own estimate
    (core.allocate.latency_estimate)."""
    return max(latency_estimate(cost_model, base_ms, ratios, hardware), 0.0)

"""The sensitivity heatmap's colours are not decided by one row: when one unit's drop dwarfs the rest (the first conv
at 90% pruning costs ~80 points while other layers cost 0.5-5), the scale is clipped at a high percentile and the
colour bar says so; the hover still gives every true value. A table without such an outlier keeps its full scale."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard.components.charts import sensitivity_heatmap


def _table(drops: dict[str, list[float]]) -> pd.DataFrame:
    ratios = (0.1, 0.5, 0.9)
    return pd.DataFrame([{"unit": u, "ratio": r, "accuracy_drop": d / 100, "accuracy": 0.99 - d / 100,
                          "loss_increase": d / 50} for u, ds in drops.items() for r, d in zip(ratios, ds, strict=True)])


def test_one_dominating_row_does_not_wash_out_the_others():
    drops = {"conv1": [2.0, 30.0, 80.0], **{f"layer{i}": [0.1 * i, 0.5 * i, 1.0 * i] for i in range(1, 9)}}
    fig = sensitivity_heatmap(_table(drops))
    heat = fig.data[0]
    assert heat.zmax is not None and heat.zmax < 30  # layers' 1-8 point drops get visible colours
    assert heat.z.max() == pytest.approx(80.0)  # the values themselves are untouched (hover shows them)
    assert "clipped" in heat.colorbar.title.text


def test_without_an_outlier_the_scale_is_the_full_range():
    drops = {f"layer{i}": [0.1 * i, 0.5 * i, 1.0 * i] for i in range(1, 9)}
    heat = sensitivity_heatmap(_table(drops)).data[0]
    assert heat.zmax is None or heat.zmax == pytest.approx(8.0)
    assert "clipped" not in heat.colorbar.title.text

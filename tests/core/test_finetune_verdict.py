"""A fine-tune that ends below where it started is reported as such, with the pre-fine-tune figure beside it (issue
13: a ConvNeXt at 0.82 after its cut was reported at 0.12 after one epoch, without a word). The accuracy right after
the (last) cut is recorded as accuracy_before_finetune, and one sentence built in core says what happened, which
the CLI prints and the Results page shows."""

from __future__ import annotations

import contextlib
import io

from core import experiment
from core.cli import main
from core.config import FinetuneConfig, PruneConfig
from tests.conftest import get_spec

MODEL = "digits-mlp"


def _config(lr: float) -> PruneConfig:
    spec = get_spec(MODEL)
    return PruneConfig(model=MODEL, method="channel", ratios={"fc1": 0.3}, model_fingerprint=spec.fingerprint,
                       finetune=FinetuneConfig(epochs=1, lr=lr))


def test_a_fine_tune_that_loses_accuracy_says_so_with_the_figure_before_it(tmp_path):
    spec = get_spec(MODEL)
    out = experiment.run(spec, _config(lr=1.0), batches=(1,))  # far too high a learning rate: it wrecks the model
    before = [p for p in out.trajectory if p["phase"] == "pruned"][-1]["accuracy"]
    assert out.pruned["accuracy_before_finetune"] == before
    assert out.pruned["accuracy"] < before - 0.05
    verdict = experiment.finetune_verdict(out.pruned)
    assert verdict and f"{100 * before:.2f}" in verdict and f"{100 * out.pruned['accuracy']:.2f}" in verdict

    config = tmp_path / "config.json"
    _config(lr=1.0).save(config)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["apply", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "fine-tuning lowered" in printed.getvalue()


def test_a_fine_tune_that_recovers_says_nothing():
    out = experiment.run(get_spec(MODEL), _config(lr=0.01), batches=(1,))
    assert out.pruned["accuracy"] >= out.pruned["accuracy_before_finetune"] - 0.005
    assert experiment.finetune_verdict(out.pruned) is None

"""The Tune page shows the fine-tune recipe chosen for the model and why (core.recipes), and lets the user set it:
the run's config records what the page showed."""

from __future__ import annotations

import pytest

from core.config import PruneConfig
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app, wait_for_job

MODEL = "digits-mlp"


@pytest.mark.slow  # AppTest: the Tune page and one run of digits-mlp with a fine-tuning epoch, ~25 s on 2 busy cores
def test_tune_shows_the_chosen_recipe_and_the_run_records_the_one_the_user_set(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Fine-tune recipe: SGD with momentum, peak lr 0.01 (sample: PruneLab's own sample")
               for c in captions), captions
    at.checkbox(key="recipe-own").check().run()
    assert at.selectbox(key="optimizer").value == "sgd" and at.number_input(key="lr").value == pytest.approx(0.01)
    assert at.number_input(key="batch-size").value == 64  # the chosen recipe's batch, kept unless set
    at.selectbox(key="optimizer").set_value("adamw").run()
    at.number_input(key="lr").set_value(0.002).run()
    at.number_input(key="batch-size").set_value(32).run()
    at.slider(key=f"ratio|{MODEL}|channel|fc1").set_value(0.25).run()
    at.number_input(key="epochs").set_value(1).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    finetune = PruneConfig.load(next((tmp_path / "runs").iterdir()) / "config.json").finetune
    assert (finetune.optimizer, finetune.lr, finetune.batchnorm, finetune.epochs, finetune.batch_size) == (
        "adamw", 0.002, "train", 1, 32)
    goto(at, "results")  # the run's recipe is said beside its schedule
    assert any("1 fine-tuning epoch (AdamW, peak lr 0.002, batches of 32)" in c.value for c in at.caption)

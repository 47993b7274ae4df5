"""The fine-tune recipe chosen from the model (core.recipes): transformers get AdamW at a small learning rate,
PruneLab's own models keep the recipe their benchmarks were measured with, BatchNorm CNNs get their statistics
re-estimated; the recipe is recorded in the config (old configs still mean SGD), applied by the fine-tune, printed
by the CLI and overridable there."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from core import schedule
from core.config import CONFIG_VERSION, FinetuneConfig, PruneConfig
from core.data import Split, calibration_subset
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.finetune import Recipe, fit, recalibrate_batchnorm
from core.loaders.user_spec import finish
from core.models import available
from core.recipes import SAMPLE, choose, describe
from sample_models import hf_zoo, third_party
from tests.conftest import get_spec

ROOT = Path(__file__).resolve().parents[2]
TODAY = FinetuneConfig(epochs=1)  # the recipe every run used before recipes were chosen: SGD, lr 0.01


@pytest.mark.parametrize("name", [n for n in available() if n != "tiny-lm"])  # the LM: tests/test_tiny_lm.py
def test_registry_models_keep_the_recipe_their_benchmarks_were_measured_with(name):
    choice = choose(get_spec(name))
    assert choice == SAMPLE
    assert choice.fill(TODAY) == TODAY
    assert (TODAY.optimizer, TODAY.lr, TODAY.batchnorm, TODAY.batch_size) == ("sgd", 0.01, "train", 64)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "vit", "gpt2", "llama-gqa", "transformer-encoder",
                                  "convnext"])
def test_transformers_and_layernorm_models_get_adamw_at_a_small_learning_rate(kind):
    choice = choose(hf_zoo.build(kind))
    assert (choice.optimizer, choice.batchnorm) == ("adamw", "train")
    assert 1e-5 <= choice.lr <= 3e-4
    assert ("transformer" in choice.reason) == (kind != "convnext")


def _image_spec(name: str, model: nn.Module) -> object:
    split = third_party.mnist_small()
    small = Split(split.train_x[:256], split.train_y[:256], split.test_x[:64], split.test_y[:64])
    return finish(name, name, model, small.test_x[:1], small, name)


def test_batchnorm_cnns_get_their_statistics_re_estimated_and_adamw_where_sgd_would_rewrite_a_layer():
    torch.manual_seed(0)
    mobilenet = choose(_image_spec("hf-mobilenetv2", third_party.hf_mobilenetv2()))  # HF's 0.02-scale weights
    effnet = choose(_image_spec("effnet", third_party.EffNet()))  # torch's default (Kaiming) scale
    assert (mobilenet.name, mobilenet.optimizer, mobilenet.batchnorm) == ("batchnorm-adamw", "adamw", "recalibrate")
    assert (effnet.name, effnet.optimizer, effnet.batchnorm) == ("batchnorm-sgd", "sgd", "recalibrate")
    assert "gradient" in mobilenet.reason and "x its own weight" in mobilenet.reason
    assert (mobilenet.batch_size, effnet.batch_size) == (64, 16)  # smaller batches helped SGD only (benchmark)


def test_a_batchnorm_cnn_with_gentle_gradients_gets_sgd_in_small_batches():
    torch.manual_seed(0)  # torch's default (Kaiming-scale) initialisation: ||grad|| / ||weight|| well below 1
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    choice = choose(_image_spec("tiny-bn-cnn", net))
    assert (choice.name, choice.optimizer, choice.batchnorm) == ("batchnorm-sgd", "sgd", "recalibrate")
    assert choice.lr == 0.005  # SGD's 0.01 at batch 64 scaled by sqrt(16 / 64)
    assert choice.batch_size == 16 and "batches of 16" in choice.reason
    filled = choice.fill(TODAY)
    assert (filled.batch_size, filled.optimizer, filled.batchnorm) == (16, "sgd", "recalibrate")
    assert describe(filled) == ("SGD with momentum, peak lr 0.005, batches of 16, BatchNorm statistics re-estimated "
                                "after")
    assert choice.fill(dataclasses.replace(TODAY, batch_size=128), given={"batch_size"}).batch_size == 128


def test_the_probe_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    spec = _image_spec("hf-mobilenetv2", third_party.hf_mobilenetv2())
    before = copy.deepcopy(spec.model.state_dict())
    choose(spec)
    assert not spec.model.training and all(p.grad is None for p in spec.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in spec.model.state_dict().items())  # BN statistics untouched


def test_user_settings_win_over_the_choice():
    choice = choose(hf_zoo.build("vit"))
    mine = choice.fill(FinetuneConfig(epochs=1, lr=0.05, optimizer="sgd"), given={"lr", "optimizer"})
    assert (mine.lr, mine.optimizer, mine.batchnorm, mine.batch_size) == (0.05, "sgd", "train", 64)
    assert describe(choice.fill(TODAY)) == f"AdamW, peak lr {choice.lr:g}"


def test_a_config_without_the_recipe_fields_loads_as_the_sgd_it_meant_and_round_trips():
    v2 = {"version": 2, "model": "digits-mlp", "method": "channel", "ratios": {"fc1": 0.5}, "criterion": "l1",
          "model_fingerprint": "", "finetune": {"epochs": 1, "lr": 0.02, "batch_size": 64, "distill": False,
                                                "temperature": 4.0, "alpha": 0.5, "rewind": False},
          "calibration_samples": 512, "seed": 0}
    config = PruneConfig.from_dict(v2)
    assert (config.finetune.optimizer, config.finetune.lr, config.finetune.batchnorm) == ("sgd", 0.02, "train")
    assert config.version == CONFIG_VERSION  # read as the current version it equals
    saved = config.to_dict()
    assert saved["finetune"]["optimizer"] == "sgd" and saved["finetune"]["batchnorm"] == "train"
    assert PruneConfig.from_json(config.to_json()) == config
    chosen = dataclasses.replace(config, finetune=FinetuneConfig(epochs=1, lr=3e-4, optimizer="adamw",
                                                                 batchnorm="recalibrate"))
    assert PruneConfig.from_json(chosen.to_json()) == chosen
    small = dataclasses.replace(config, finetune=FinetuneConfig(epochs=1, batch_size=16, batchnorm="recalibrate"))
    assert PruneConfig.from_json(small.to_json()).finetune.batch_size == 16
    no_batch = copy.deepcopy(v2)
    del no_batch["finetune"]["batch_size"]  # a config that never said its batch size meant the default 64
    assert PruneConfig.from_dict(no_batch).finetune.batch_size == 64


@pytest.mark.parametrize("field, value", [("optimizer", "adam"), ("batchnorm", "off"), ("optimizer", 3)])
def test_an_unknown_recipe_setting_is_one_line(field, value):
    with pytest.raises(PruneLabError, match=f"^finetune {field} must be one of .*, got {value!r}$"):
        FinetuneConfig(epochs=1, **{field: value})


def _bn_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=0.997), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(200, 1, 8, 8) * 3 + 1
    return model, x, torch.randint(0, 3, (200,))


def test_batchnorm_frozen_keeps_the_statistics_and_recalibrate_re_estimates_them():
    model, x, y = _bn_net()
    recalibrate_batchnorm(model, x)
    stats = model[1].running_mean.clone()
    frozen = copy.deepcopy(model)
    fit(frozen, x, y, Recipe(epochs=1, lr=1e-3, optimizer="adamw", batchnorm="frozen"))
    assert torch.equal(frozen[1].running_mean, stats) and not torch.equal(frozen[0].weight, model[0].weight)
    trained = copy.deepcopy(model)
    fit(trained, x, y, Recipe(epochs=1, lr=1e-3, optimizer="adamw"), seed=3)
    recal = copy.deepcopy(model)
    fit(recal, x, y, Recipe(epochs=1, lr=1e-3, optimizer="adamw", batchnorm="recalibrate"), seed=3)
    expected = copy.deepcopy(trained)
    recalibrate_batchnorm(expected, calibration_subset(x, 1024, seed=3))  # all 200 inputs, in the fit's order
    assert torch.allclose(recal[1].running_mean, expected[1].running_mean, atol=1e-6)
    assert not torch.allclose(trained[1].running_mean, expected[1].running_mean, atol=1e-3)  # momentum 0.997


def test_the_schedule_fine_tunes_with_the_configs_optimizer():
    spec = get_spec("digits-mlp")
    config = PruneConfig("digits-mlp", "unstructured", {}, finetune=FinetuneConfig(epochs=1, optimizer="adamw",
                                                                                     lr=1e-3))
    sgd = schedule.train(spec, dataclasses.replace(config, finetune=FinetuneConfig(epochs=1, lr=1e-3)))
    adamw = schedule.train(spec, config)
    assert not torch.equal(sgd.model.fc1.weight, adamw.model.fc1.weight)
    expected = copy.deepcopy(spec.model)
    fit(expected, spec.split.train_x, spec.split.train_y, Recipe(epochs=1, lr=1e-3, optimizer="adamw"), seed=0)
    assert torch.equal(adamw.model.fc1.weight, expected.fc1.weight)


def _prunelab(*args: str, home: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_prints_the_recipe_records_it_and_takes_overrides(tmp_path):
    common = ("--method", "unstructured", "--ratio", "0.3", "--finetune-epochs", "1", "--latency-batches", "1")
    done = _prunelab("prune", "digits-mlp", *common, "--out", str(tmp_path / "a"), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "fine-tune recipe: SGD with momentum, peak lr 0.01 (sample: PruneLab's own sample" in done.stdout
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["finetune"]
    assert (saved["optimizer"], saved["lr"], saved["batchnorm"]) == ("sgd", 0.01, "train")
    mine = _prunelab("prune", "digits-mlp", *common, "--optimizer", "adamw", "--lr", "0.002", "--batch-size", "16",
                     "--out", str(tmp_path / "b"), home=tmp_path / "home")
    assert mine.returncode == 0, mine.stderr
    assert "fine-tune recipe: AdamW, peak lr 0.002, batches of 16 (" in mine.stdout
    assert "set by you: optimizer, lr, batch_size)" in mine.stdout
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["finetune"]
    assert (saved["optimizer"], saved["lr"], saved["batch_size"]) == ("adamw", 0.002, 16)


@pytest.mark.slow  # trains the suite's BERT (~25 s on 2 cores)
def test_a_hugging_face_bert_keeps_its_accuracy_after_a_control_epoch_of_its_recipe():
    spec = third_party.load("hf-bert", cached=False)
    split = spec.split
    base = evaluate(spec.model, split.test_x, split.test_y)["accuracy"]
    assert base > 0.6  # a real baseline: five topics, chance is 0.2

    def control(finetune: FinetuneConfig) -> float:
        config = PruneConfig(spec.name, "unstructured", {}, model_fingerprint=spec.fingerprint, finetune=finetune)
        model = schedule.train(spec, config).model
        return evaluate(model, split.test_x, split.test_y)["accuracy"]

    chosen = choose(spec).fill(TODAY)
    assert chosen.optimizer == "adamw"
    assert control(chosen) >= base - 0.005  # within half a point
    assert control(TODAY) < base - 0.05  # what the SGD recipe did to it

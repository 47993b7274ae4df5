"""PruneConfig / FinetuneConfig: exact round trips, strict reading, validated ratios, private copies,
and refusal to replay a config onto another model or other weights."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.config import CONFIG_VERSION, FinetuneConfig, Pattern, PruneConfig, Schedule, check_ratio
from core.errors import PruneLabError
from core.prune import apply, check_config_matches
from tests.conftest import get_spec

KEYS = {"model", "method", "ratios", "criterion", "model_fingerprint", "finetune", "calibration_samples", "seed",
        "schedule", "pattern", "remove_blocks", "repair", "then", "quantize", "version"}


def _configs() -> list[PruneConfig]:
    return [
        PruneConfig(model="digits-mlp", method="channel", ratios={"fc2": 0.25, "fc1": 0.5}),
        PruneConfig(model="mnist-resnet", method="unstructured", ratios={"stem.0": 0.1, "layer1.0.conv1": 0.9},
                    criterion="l2", model_fingerprint="0123456789abcdef", seed=7, calibration_samples=64,
                    finetune=FinetuneConfig(epochs=3, lr=0.05, batch_size=32, distill=True, rewind=True),
                    schedule=Schedule("iterative", steps=4, curve="linear"), repair="lstsq"),
        PruneConfig(model="mnist-resnet", method="block", ratios={"layer1.0.conv1": 0.5},
                    pattern=Pattern(block=(8, 8)), schedule=Schedule("dynamic", update_every=5),
                    finetune=FinetuneConfig(epochs=2)),
        PruneConfig(model="mnist-resnet", method="layer", ratios={}, remove_blocks=("layer3.1", "layer1.1")),
    ]


def _valid_dict(**changes) -> dict:
    data = PruneConfig(model="digits-mlp", method="channel", ratios={"fc1": 0.5}).to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize("config", _configs(), ids=["channel", "unstructured+finetune", "block-dynamic", "layer"])
def test_round_trips(config, tmp_path):
    assert PruneConfig.from_json(config.to_json()) == config
    assert PruneConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "nested" / "config.json"
    config.save(path)
    loaded = PruneConfig.load(path)
    assert loaded == config
    assert isinstance(loaded.finetune, FinetuneConfig)
    assert loaded.finetune == config.finetune
    assert set(config.to_dict()) == KEYS
    assert set(config.to_dict()["finetune"]) == {"epochs", "lr", "batch_size", "distill", "temperature", "alpha",
                                                 "rewind", "optimizer", "batchnorm"}
    assert config.to_dict()["version"] == CONFIG_VERSION == 6
    text = config.to_json()
    assert text.endswith("\n") and json.loads(text) == config.to_dict()
    assert list(json.loads(text)) == sorted(KEYS)  # stable, diff-friendly key order
    assert list(config.ratios) == sorted(config.ratios)
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # atomic write left no temp file


def test_defaults():
    config = PruneConfig(model="digits-mlp", method="channel", ratios={})
    assert (config.criterion, config.model_fingerprint, config.seed, config.calibration_samples) == ("l1", "", 0, 512)
    assert config.finetune == FinetuneConfig() == FinetuneConfig(epochs=0, lr=0.01, batch_size=64)
    assert config.version == CONFIG_VERSION


def test_config_is_frozen():
    config = _configs()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize("text, message", [
    (json.dumps(_valid_dict(version=7)), "version 7 is not supported"),
    (json.dumps({k: v for k, v in _valid_dict().items() if k != "version"}), "no 'version' field"),
    (json.dumps(_valid_dict(colour="red")), "unknown field(s): colour"),
    (json.dumps(_valid_dict(finetune={"epochs": 1, "momentum": 0.9})), "finetune has unknown field(s): momentum"),
    ('{"version": 1, "model": "digits-mlp",', "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"config"', "must be a JSON object"),
    ("null", "must be a JSON object"),
    (json.dumps({"version": 1, "method": "channel", "ratios": {}}), "incomplete"),
    (json.dumps(_valid_dict(method="lottery")), "unknown method 'lottery'"),
    (json.dumps(_valid_dict(criterion="l3")), "unknown criterion 'l3'"),
    (json.dumps(_valid_dict(ratios=[0.5])), "ratios must be a mapping"),
    (json.dumps(_valid_dict(seed=-1)), "seed must be an integer from 0 to 4294967295"),
    (json.dumps(_valid_dict(calibration_samples=1.5)), "calibration_samples must be an integer from 1 to 1000000"),
    ('{"version": 1, "model": "digits-mlp", "method": "channel", "ratios": {"fc1": NaN}}', "got nan"),
], ids=["version-7", "no-version", "unknown-field", "unknown-finetune-field", "truncated", "empty", "list",
        "string", "null", "missing-model", "bad-method", "bad-criterion", "ratios-list", "negative-seed",
        "float-calibration", "nan-literal"])
def test_bad_config_text_is_refused_with_a_precise_message(text, message):
    with pytest.raises(PruneLabError) as info:
        PruneConfig.from_json(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # one line for the CLI and the dashboard


def test_version_checked_before_fields():
    """A future version with fields this PruneLab does not know is refused for its version, not its fields."""
    with pytest.raises(PruneLabError, match="version 99 is not supported"):
        PruneConfig.from_dict({"version": 99, "sparsity_schedule": "cubic"})
    with pytest.raises(PruneLabError, match="version 7"):
        PruneConfig(model="digits-mlp", method="channel", ratios={}, version=7)


def test_unreadable_files(tmp_path):
    with pytest.raises(PruneLabError, match="cannot read config"):
        PruneConfig.load(tmp_path / "missing.json")
    with pytest.raises(PruneLabError, match="cannot read config"):
        PruneConfig.load(tmp_path)  # a directory
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PruneLabError):
        PruneConfig.load(binary)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), float("inf"), float("-inf"), "0.5", True, False,
                                   None, [0.5]], ids=repr)
def test_bad_ratios_are_refused(ratio):
    with pytest.raises(PruneLabError) as info:
        PruneConfig(model="digits-mlp", method="channel", ratios={"fc1": 0.2, "fc2": ratio})
    assert "'fc2'" in str(info.value)  # names the layer
    with pytest.raises(PruneLabError):
        check_ratio("x", ratio)
    with pytest.raises(PruneLabError):
        PruneConfig.from_dict(_valid_dict(ratios={"fc2": ratio}))


@pytest.mark.parametrize("ratio, stored", [(0, 0.0), (0.0, 0.0), (0.5, 0.5), (0.999, 0.999), (1e-9, 1e-9)])
def test_good_ratios_are_stored_as_floats(ratio, stored):
    config = PruneConfig(model="digits-mlp", method="channel", ratios={"fc1": ratio})
    assert config.ratios == {"fc1": stored}
    assert type(config.ratios["fc1"]) is float


def test_ratios_are_a_private_copy():
    mine = {"fc1": 0.5}
    config = PruneConfig(model="digits-mlp", method="channel", ratios=mine)
    mine["fc1"] = 0.9
    mine["fc2"] = 0.1
    assert config.ratios == {"fc1": 0.5}
    exported = config.to_dict()
    exported["ratios"]["fc1"] = 0.7
    exported["finetune"]["epochs"] = 5
    assert config.ratios == {"fc1": 0.5} and config.finetune.epochs == 0


@pytest.mark.parametrize("changes", [
    {"epochs": -1}, {"epochs": 1.5}, {"epochs": True}, {"epochs": 1001}, {"epochs": "2"},
    {"lr": 0}, {"lr": -0.1}, {"lr": float("nan")}, {"lr": float("inf")}, {"lr": 11}, {"lr": "0.1"},
    {"batch_size": 0}, {"batch_size": 2.0}, {"batch_size": False},
], ids=repr)
def test_bad_finetune_settings_are_refused(changes):
    with pytest.raises(PruneLabError, match="finetune " + next(iter(changes))):
        FinetuneConfig(**changes)
    with pytest.raises(PruneLabError, match="finetune " + next(iter(changes))):
        PruneConfig.from_dict(_valid_dict(finetune=changes))


@pytest.mark.parametrize("finetune", [None, [1], "fast"], ids=repr)
def test_finetune_must_be_an_object(finetune):
    with pytest.raises(PruneLabError, match="finetune"):
        PruneConfig.from_dict(_valid_dict(finetune=finetune))


def test_check_config_matches():
    spec = get_spec("digits-mlp")
    good = PruneConfig(model="digits-mlp", method="channel", ratios={"fc1": 0.5}, model_fingerprint=spec.fingerprint)
    check_config_matches(spec, good)
    check_config_matches(spec, dataclasses.replace(good, model_fingerprint=""))  # "" = not checked
    with pytest.raises(PruneLabError, match="'mnist-resnet'.*'digits-mlp'"):
        check_config_matches(spec, dataclasses.replace(good, model="mnist-resnet"))
    wrong = dataclasses.replace(good, model_fingerprint="ffffffffffffffff")
    with pytest.raises(PruneLabError, match="other weights") as info:
        check_config_matches(spec, wrong)
    assert "ffffffffffffffff" in str(info.value) and spec.fingerprint in str(info.value)
    with pytest.raises(PruneLabError, match="other weights"):
        apply(spec, wrong)  # apply checks before pruning
    with pytest.raises(PruneLabError, match="not 'digits-mlp'"):
        apply(spec, dataclasses.replace(good, model="mnist-vit"))


def test_version_1_files_read_as_the_version_2_config_they_equal():
    v1 = {"version": 1, "model": "digits-mlp", "method": "channel", "ratios": {"fc1": 0.5}, "criterion": "l1",
          "model_fingerprint": "", "finetune": {"epochs": 1, "lr": 0.01, "batch_size": 64},
          "calibration_samples": 512, "seed": 0}
    config = PruneConfig.from_dict(v1)
    assert config == PruneConfig("digits-mlp", "channel", {"fc1": 0.5}, finetune=FinetuneConfig(epochs=1))
    assert config.version == CONFIG_VERSION and config.schedule == Schedule() and config.pattern == Pattern()
    assert config.repair == "none"
    assert PruneConfig.from_json(config.to_json()) == config


def test_version_3_files_read_as_configs_without_repair():
    v3 = {**PruneConfig("digits-mlp", "unstructured", {"fc1": 0.5}).to_dict(), "version": 3}
    del v3["repair"]
    config = PruneConfig.from_dict(v3)
    assert config.repair == "none" and config.version == CONFIG_VERSION
    repaired = dataclasses.replace(config, repair="sparsegpt")
    assert PruneConfig.from_json(repaired.to_json()) == repaired


@pytest.mark.parametrize("changes, message", [
    ({"method": "nm", "ratios": {"fc1": 0.75}}, "removes exactly 0.5"),
    ({"method": "layer", "ratios": {"fc1": 0.5}}, "takes the blocks to remove in remove_blocks"),
    ({"remove_blocks": ["fc1"]}, "remove_blocks is for the layer method"),
    ({"schedule": {"kind": "dynamic"}, "finetune": {"epochs": 2}}, "use it with unstructured or block"),
    ({"method": "nm", "ratios": {"fc1": 0.5}, "schedule": {"kind": "iterative"}, "finetune": {"epochs": 2}},
     "nothing to grow"),
    ({"schedule": {"kind": "iterative"}}, "give at least one epoch"),
    ({"finetune": {"epochs": 1, "rewind": True}}, "use it with a mask method"),
    ({"finetune": {"distill": True}}, "give at least one fine-tuning epoch"),
    ({"finetune": {"epochs": 1, "alpha": 1.5}}, "alpha must be a number from 0 to 1"),
    ({"finetune": {"epochs": 1, "temperature": 0}}, "temperature must be a number from 0.1 to 100"),
    ({"schedule": {"kind": "gradual"}}, "unknown schedule 'gradual'"),
    ({"schedule": {"curve": "exp"}}, "unknown schedule curve"),
    ({"schedule": {"steps": 0}}, "steps must be an integer"),
    ({"pattern": {"n": 4, "m": 4}}, "0 < N < M"),
    ({"pattern": {"block": [1, 1]}}, "block must be [rows, cols]"),
    ({"pattern": {"block": [4]}}, "block must be [rows, cols]"),
    ({"method": "channel", "repair": "sparsegpt"}, "the channel method cannot repair with 'sparsegpt': it takes "
     "lstsq, bias"),
    ({"method": "layer", "ratios": {}, "remove_blocks": ["fc1"], "repair": "lstsq"}, "no post-training repair"),
    ({"method": "block", "repair": "sparsegpt"}, "it takes lstsq"),
    ({"method": "unstructured", "repair": "obs"}, "cannot repair with 'obs': it takes sparsegpt, lstsq"),
    ({"method": "unstructured", "repair": "sparsegpt", "criterion": "wanda"}, "criterion wanda would be ignored"),
    ({"method": "unstructured", "repair": "lstsq", "schedule": {"kind": "dynamic"}, "finetune": {"epochs": 1}},
     "no lstsq repair runs"),
])
def test_method_options_that_cannot_work_are_refused(changes, message):
    with pytest.raises(PruneLabError) as info:
        PruneConfig.from_dict(_valid_dict(**changes))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_schedule_curves():
    assert [Schedule(curve="linear").fraction(t) for t in (0, 0.5, 1)] == [0, 0.5, 1]
    assert Schedule(curve="cubic").fraction(0.5) == pytest.approx(0.875)  # AGP: most of the cut early
    assert Schedule().fraction(2) == 1 and Schedule().fraction(-1) == 0

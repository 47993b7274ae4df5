"""The `prunelab` command line: clean JSON on stdout, one-line errors with exit status 2, and prune/apply
runs whose files replay and load in onnxruntime."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.config import PruneConfig
from core.estimate import build_cost_model
from core.evaluate import evaluate
from core.graph import channel_units, unstructured_units
from core.latency import session
from core.metrics import count_params, total_flops
from core.models import load
from core.prune import apply
from tests.conftest import get_spec

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"params", "nonzero_params", "size_bytes", "flops", "latency_ms", "accuracy"}


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("PRUNELAB_DEBUG", raising=False)


def _call(*argv: str) -> tuple[int, str, str]:
    """main(argv) with its own stdout/stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("prunelab: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- baseline ------------------------------------------------------------------------------------------


def _check_baseline(metrics: dict) -> None:
    spec = get_spec("digits-mlp")
    assert METRIC_KEYS <= set(metrics)
    assert metrics["params"] == count_params(load("digits-mlp").model) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert metrics["nonzero_params"] == metrics["params"]
    assert metrics["size_bytes"] == 4 * metrics["params"]  # fp32, no buffers
    assert metrics["flops"] == total_flops(spec.model, spec.example_input) == 2 * (64 * 128 + 128 * 64 + 64 * 10)
    assert 0 < metrics["latency_ms"] < 1000
    assert metrics["accuracy"] == evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]
    assert 0.95 <= metrics["accuracy"] <= 1.0


def test_baseline_json(capsys):
    code = main(["baseline", "digits-mlp", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    _check_baseline(json.loads(out))
    assert "error" not in err


def _subprocess(*argv: str, script: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (script or [sys.executable, "-m", "core.cli"]) + list(argv)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_baseline_json_in_a_real_process():
    proc = _subprocess("baseline", "digits-mlp", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _check_baseline(json.loads(proc.stdout))


@pytest.mark.parametrize("argv, fragment", [
    (["prune", "digits-mlp", "--method", "channel", "--ratio", "1.5", "--out", "never"], "1.5"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=["ratio-1.5", "unknown-subcommand"])
def test_errors_in_a_real_process(argv, fragment):
    proc = _subprocess(*argv)
    _assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, fragment)
    assert not (ROOT / "never").exists()


def test_installed_console_script_exit_code():
    script = Path(sys.executable).with_name("prunelab")
    if not script.exists():
        pytest.skip("the prunelab console script is not installed next to this interpreter")
    proc = _subprocess("prune", "digits-mlp", "--method", "channel", "--ratio", "abc", "--out", "never",
                       script=[str(script)])
    _assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "'abc'")


# --- bad arguments ------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.json" for name in ("corrupt", "v99", "plain", "unknown", "badratio")}
    paths["corrupt"].write_text('{"version": 1, "model": "digits-mlp", "ratios": {', encoding="utf-8")
    paths["v99"].write_text(json.dumps({"version": 99, "model": "digits-mlp", "method": "channel", "ratios": {}}))
    paths["plain"].write_text(json.dumps({"fc1": 0.5}))
    paths["unknown"].write_text(json.dumps({"fc1": 0.2, "fc9": 0.5}))
    paths["badratio"].write_text(json.dumps({"fc1": 1.5}))
    paths["missing"] = tmp_path / "missing.json"
    paths["out"] = tmp_path / "out"
    return paths


PRUNE = ["prune", "digits-mlp", "--method", "channel"]
BAD_ARGUMENTS = {
    "unknown-model": (["baseline", "nope"], ["unknown model 'nope'", "digits-mlp"]),
    "unknown-model-prune": (["prune", "nope", "--method", "channel", "--ratio", "0.5", "--out", "{out}"],
                            ["unknown model 'nope'"]),
    "unknown-model-layers": (["layers", "nope"], ["unknown model 'nope'"]),
    "unknown-model-dashboard": (["dashboard", "--model", "nope"], ["unknown model 'nope'"]),
    "ratio-1.5": (PRUNE + ["--ratio", "1.5", "--out", "{out}"], ["1.5", "below 1"]),
    "ratio-1": (PRUNE + ["--ratio", "1", "--out", "{out}"], ["below 1"]),
    "ratio-negative": (PRUNE + ["--ratio", "-0.1", "--out", "{out}"], ["-0.1"]),
    "ratio-abc": (PRUNE + ["--ratio", "abc", "--out", "{out}"], ["'abc'"]),
    "ratio-nan": (PRUNE + ["--ratio", "nan", "--out", "{out}"], ["nan"]),
    "ratio-inf": (PRUNE + ["--ratio", "inf", "--out", "{out}"], ["inf"]),
    "missing-out": (PRUNE + ["--ratio", "0.5"], ["--out"]),
    "missing-ratio": (PRUNE + ["--out", "{out}"], ["--ratio", "--config"]),
    "ratio-and-config": (PRUNE + ["--ratio", "0.5", "--config", "{plain}", "--out", "{out}"], ["not allowed"]),
    "bad-method": (["prune", "digits-mlp", "--method", "magic", "--ratio", "0.5", "--out", "{out}"], ["'magic'"]),
    "no-method-plain-ratios": (["prune", "digits-mlp", "--config", "{plain}", "--out", "{out}"], ["--method"]),
    "negative-epochs": (PRUNE + ["--ratio", "0.5", "--finetune-epochs", "-1", "--out", "{out}"], ["epochs"]),
    "bad-lr": (PRUNE + ["--ratio", "0.5", "--lr", "nan", "--out", "{out}"], ["lr"]),
    "unknown-subcommand": (["frobnicate"], ["'frobnicate'"]),
    "no-subcommand": ([], ["command"]),
    "unknown-option": (["baseline", "digits-mlp", "--bogus"], ["--bogus"]),
    "config-missing": (["apply", "{missing}", "--out", "{out}"], ["missing.json"]),
    "config-missing-prune": (PRUNE + ["--config", "{missing}", "--out", "{out}"], ["missing.json"]),
    "config-corrupt": (["apply", "{corrupt}", "--out", "{out}"], ["not valid JSON"]),
    "config-corrupt-prune": (PRUNE + ["--config", "{corrupt}", "--out", "{out}"], ["corrupt.json"]),
    "config-version-99": (["apply", "{v99}", "--out", "{out}"], ["version 99"]),
    "config-version-99-prune": (["prune", "digits-mlp", "--config", "{v99}", "--out", "{out}"], ["version 99"]),
    "plain-unknown-layer": (PRUNE + ["--config", "{unknown}", "--out", "{out}"],
                            ["fc9", "prunelab layers digits-mlp --method channel"]),
    "plain-bad-ratio": (PRUNE + ["--config", "{badratio}", "--out", "{out}"], ["'fc1'", "1.5"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_give_one_line_and_exit_2(case, files, capsys):
    argv, fragments = BAD_ARGUMENTS[case]
    code = main([a.format(**files) for a in argv])
    out, err = capsys.readouterr()
    _assert_one_line_error(code, out, err, *fragments)
    assert not files["out"].exists()


def test_apply_config_with_null_finetune_is_a_user_error(tmp_path, capsys):
    spec = get_spec("digits-mlp")
    data = PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5}).to_dict()
    data["finetune"] = None
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    code = main(["apply", str(path), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    _assert_one_line_error(code, out, err, "finetune")


def test_negative_thread_count_is_refused(capsys):
    code = main(["baseline", "digits-mlp", "--json", "--threads", "-1"])
    out, err = capsys.readouterr()
    _assert_one_line_error(code, out, err, "threads")


def _wrong_fingerprint_config(tmp_path: Path) -> Path:
    spec = get_spec("digits-mlp")
    path = tmp_path / "config.json"
    PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5}, model_fingerprint="ffffffffffffffff").save(path)
    return path


def test_apply_refuses_a_config_for_other_weights(tmp_path, capsys):
    code = main(["apply", str(_wrong_fingerprint_config(tmp_path)), "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == 2
    assert "other weights of digits-mlp" in err and "ffffffffffffffff" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_errors_during_a_run_still_start_their_own_line(tmp_path, capsys):
    code = main(["apply", str(_wrong_fingerprint_config(tmp_path)), "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if "prunelab: error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith("prunelab: error: ")


def test_out_that_is_a_file_is_a_user_error(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code = main(["prune", "digits-mlp", "--method", "channel", "--ratio", "0.5", "--out", str(target)])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err
    assert str(target) in err
    assert target.read_text() == "not a folder"


# --- prune and apply ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("cli") / "run1"
    code, stdout, stderr = _call("prune", "digits-mlp", "--method", "channel", "--ratio", "0.5",
                                 "--finetune-epochs", "1", "--out", out)
    assert code == 0, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def applied(pruned, tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("cli") / "run2"
    code, stdout, stderr = _call("apply", pruned[0] / "config.json", "--out", out)
    assert code == 0, stderr
    return out, stdout, stderr


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def test_prune_writes_its_files(pruned):
    folder, stdout, stderr = pruned
    assert sorted(p.name for p in folder.iterdir()) == [".prunelab-run.json", "config.json", "metrics.json",
                                                        "model.onnx", "model.safetensors"]  # identity written first
    assert "wrote" in stdout and str(folder / "metrics.json") in stdout
    assert "parameters" in stdout and "test accuracy" in stdout
    assert "error" not in stderr


def test_prune_metrics(pruned):
    spec = get_spec("digits-mlp")
    metrics = _metrics(pruned[0])
    assert {"baseline", "pruned"} <= set(metrics)
    for side in ("baseline", "pruned"):
        assert METRIC_KEYS <= set(metrics[side]), side
        assert metrics[side]["latency_ms"] > 0
        assert 0.0 <= metrics[side]["accuracy"] <= 1.0
    base, after = metrics["baseline"], metrics["pruned"]
    assert after["params"] < base["params"]
    assert after["flops"] < base["flops"]
    assert base["params"] == count_params(spec.model)
    ratios = {u.name: 0.5 for u in channel_units(spec.model, spec.example_input)}
    expected = build_cost_model(spec.model, spec.example_input, "channel").estimate(ratios)
    for key in ("params", "nonzero_params", "size_bytes", "flops"):
        assert after[key] == expected[key], key
    assert metrics["removed"] == {"fc1": 64, "fc2": 32}
    assert len(metrics["finetune_losses"]) == 1
    assert after["accuracy"] > 0.9


def test_prune_config_is_complete(pruned):
    spec = get_spec("digits-mlp")
    config = PruneConfig.load(pruned[0] / "config.json")
    assert config.model == "digits-mlp" and config.method == "channel"
    assert config.ratios == {"fc1": 0.5, "fc2": 0.5}
    assert config.model_fingerprint == spec.fingerprint
    assert config.finetune.epochs == 1 and config.seed == 0 and config.criterion == "l1"


def test_prune_onnx_runs_in_onnxruntime(pruned):
    spec = get_spec("digits-mlp")
    sess = session((pruned[0] / "model.onnx").read_bytes())
    for batch in (1, 7):
        (logits,) = sess.run(None, {"input": spec.split.test_x[:batch].numpy()})
        assert logits.shape == (batch, 10) and np.isfinite(logits).all()
    (logits,) = sess.run(None, {"input": spec.split.test_x.numpy()})
    accuracy = float((logits.argmax(1) == spec.split.test_y.numpy()).mean())
    assert abs(accuracy - _metrics(pruned[0])["pruned"]["accuracy"]) <= 2 / len(spec.split.test_y)


def test_apply_replays_the_run(pruned, applied):
    first, second = _metrics(pruned[0]), _metrics(applied[0])
    for key in ("params", "nonzero_params", "size_bytes", "flops", "sparse_flops", "accuracy", "loss"):
        assert second["pruned"][key] == first["pruned"][key], key
    assert second["removed"] == first["removed"]
    assert second["finetune_losses"] == first["finetune_losses"]
    assert PruneConfig.load(applied[0] / "config.json") == PruneConfig.load(pruned[0] / "config.json")
    assert "wrote" in applied[1]


def test_prune_with_plain_ratios_file(tmp_path):
    ratios = tmp_path / "ratios.json"
    ratios.write_text(json.dumps({"fc1": 0.5}))
    code, stdout, stderr = _call("prune", "digits-mlp", "--method", "channel", "--config", ratios,
                                 "--out", tmp_path / "out")
    assert code == 0, stderr
    metrics = _metrics(tmp_path / "out")
    assert metrics["removed"] == {"fc1": 64}
    assert metrics["pruned"]["params"] == metrics["baseline"]["params"] - 64 * 64 - 64 - 64 * 64
    config = PruneConfig.load(tmp_path / "out" / "config.json")
    assert config.ratios == {"fc1": 0.5} and config.finetune.epochs == 0


# --- layers -------------------------------------------------------------------------------------------


def test_layers_json_lists_valid_config_keys(capsys):
    code = main(["layers", "mnist-resnet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)
    spec = get_spec("mnist-resnet")
    units = channel_units(spec.model, spec.example_input)
    assert [r["name"] for r in rows] == [u.name for u in units]
    assert [r["size"] for r in rows] == [u.size for u in units]
    for row, unit in zip(rows, units, strict=True):
        assert row["name"] not in row["coupled"]
        assert set(row["coupled"]) == {m.name for m in unit.members} - {unit.name}
    # every listed name is accepted as a config key and prunes its group
    config = PruneConfig(model=spec.name, method="channel", ratios={r["name"]: 0.3 for r in rows},
                         model_fingerprint=spec.fingerprint)
    result = apply(spec, config)
    assert set(result.removed) == {r["name"] for r in rows}
    assert rows[0]["name"] == "stem.0" and "layer1.0.bn2" in rows[0]["coupled"]  # residual coupling shown


def test_layers_unstructured_json_and_text(capsys):
    assert main(["layers", "digits-mlp", "--method", "unstructured", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    spec = get_spec("digits-mlp")
    assert [(r["name"], r["size"]) for r in rows] == [(u.name, u.size) for u in unstructured_units(spec.model)]
    assert [r["size"] for r in rows] == [64 * 128, 128 * 64, 64 * 10]
    assert main(["layers", "digits-mlp"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in text] == ["fc1", "fc2"]
    assert "coupled: fc2" in text[0]


def test_latency_batches_are_chosen_by_the_user_and_torch_is_timed_beside():
    code, out, err = _call("baseline", "digits-mlp", "--latency-batches", "1,8", "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["latency_batches"] == [1, 8]
    for key in ("latency_ms", "latency_ms_batch8", "torch_latency_ms", "torch_latency_ms_batch8"):
        assert metrics[key] > 0, key
    assert "latency_ms_batch32" not in metrics
    code, _, err = _call("baseline", "digits-mlp", "--latency-batches", "0,x")
    assert code == 2 and "comma-separated batch sizes" in err

"""`prunelab` on a model written outside the repository (a factory file plus its data), in real processes:
prune with fine-tuning, measure, export, replay, record in the store; and the bad-file messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest
import torch

from tests.test_user_models import CNN_FACTORY, CNN_PARTS, Marker, write

ROOT = Path(__file__).resolve().parents[1]


def prunelab(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def factory(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("outside")
    write(folder, "um_cnn_parts.py", CNN_PARTS)
    return f"{write(folder, 'cnn.py', CNN_FACTORY)}:build"


def test_prune_a_model_file_from_outside_the_repo_and_replay_it(factory, tmp_path):
    out = tmp_path / "run"
    done = prunelab("prune", factory, "--method", "channel", "--ratio", "0.5", "--finetune-epochs", "1",
                    "--latency-batches", "1", "--out", str(out), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    base, pruned = metrics["baseline"], metrics["pruned"]
    assert pruned["params"] < base["params"] and base["accuracy"] > 0.85 and 0 < pruned["accuracy"] <= 1
    assert "f1" in pruned  # the factory's own metric, measured beside accuracy
    sess = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {sess.get_inputs()[0].name: torch.zeros(3, 1, 8, 8).numpy()})[0].shape == (3, 10)
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == factory
    # the config names a Python file: replaying it runs that file only when the user names it (or trusts it)
    refused = prunelab("apply", str(out / "config.json"), "--finetune-epochs", "0", "--latency-batches", "1",
                       "--out", str(tmp_path / "replay"), home=tmp_path / "home")
    assert refused.returncode == 2 and "--model" in refused.stderr and not (tmp_path / "replay").exists()
    replay = prunelab("apply", str(out / "config.json"), "--model", factory, "--finetune-epochs", "0",
                      "--latency-batches", "1", "--out", str(tmp_path / "replay"), home=tmp_path / "home")
    assert replay.returncode == 0, replay.stderr
    again = json.loads((tmp_path / "replay" / "metrics.json").read_text())["pruned"]
    assert again["params"] == pruned["params"] and again["flops"] == pruned["flops"]
    listed = prunelab("experiments", "list", "--json", home=tmp_path / "home")
    assert {e["model"] for e in json.loads(listed.stdout)} == {factory}


@pytest.mark.parametrize("case", ["truncated", "pickle", "missing", "raises"])
def test_bad_model_files_give_one_line_and_run_nothing(case, tmp_path):
    marker = tmp_path / "pwned"
    if case == "truncated":
        good = tmp_path / "good.pt"
        from tests.conftest import get_spec

        torch.save(get_spec("digits-mlp").model.state_dict(), good)
        bad = tmp_path / "bad.pt"
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        args, expect = ("baseline", "digits-mlp", "--weights", str(bad)), "bad.pt"
    elif case == "pickle":
        evil = tmp_path / "evil.pt"
        torch.save({"fc1.weight": Marker(marker)}, evil)
        args, expect = ("baseline", "digits-mlp", "--weights", str(evil)), "--trust-pickle"
    elif case == "missing":
        args, expect = ("baseline", str(tmp_path / "nope.py:build")), "nope.py"
    else:
        path = write(tmp_path, "boom.py", "def build():\n    raise RuntimeError('no GPU here')\n")
        args, expect = ("prune", f"{path}:build", "--method", "channel", "--ratio", "0.5", "--out",
                        str(tmp_path / "o")), "no GPU here"
    done = prunelab(*args, home=tmp_path / "home")
    assert done.returncode == 2 and expect in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not marker.exists()

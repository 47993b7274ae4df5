"""Code runs only where the user asked for it: a config (or a run folder) that names a model file or folder is
never loaded by `prunelab apply` / `prunelab deploy` unless the user names the model (--model) or trusts the
config (--trust-code). Real processes; the model file leaves a marker if any of its code runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import PruneConfig
from tests.conftest import get_spec

ROOT = Path(__file__).resolve().parents[1]

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("code from the config's model file ran")

def build():
    raise RuntimeError("the hostile factory was called")
"""


def prunelab(*args: str, home: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNELAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _config(model: str, fingerprint: str = "") -> str:
    return PruneConfig(model=model, method="channel", ratios={"features.0": 0.5},
                       model_fingerprint=fingerprint).to_json()


@pytest.fixture
def shared(tmp_path: Path) -> dict:
    """A folder as a colleague would mail it: config.json beside a model.py that leaves a marker when run,
    plus a file elsewhere reached by '../', a Hugging Face folder and a pickle."""
    folder, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    marker = tmp_path / "pwned"
    for f in (folder / "model.py", elsewhere / "x.py"):
        f.write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    hf = folder / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    (folder / "model.pt").write_bytes(b"not really a pickle")
    return {"folder": folder, "marker": marker, "home": tmp_path / "home",
            "refs": {"absolute": f"{folder / 'model.py'}:build", "relative": "model.py:build",
                     "dotdot": "../elsewhere/x.py:build", "hf-folder": "hf", "pickle": "model.pt"}}


@pytest.mark.parametrize("kind", ["absolute", "relative", "dotdot", "hf-folder", "pickle"])
def test_apply_never_loads_a_model_named_by_the_config(shared, kind):
    folder, ref = shared["folder"], shared["refs"][kind]
    (folder / "config.json").write_text(_config(ref, fingerprint="" if kind != "absolute" else "0" * 16))
    done = prunelab("apply", "config.json", "--out", "out", home=shared["home"], cwd=folder)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "--trust-code" in lines[0] and "--model" in lines[0] and ref in lines[0]
    assert not shared["marker"].exists()
    assert not (folder / "out").exists()


def test_deploy_never_loads_the_model_a_run_folder_names(shared):
    run = shared["folder"] / "run"
    run.mkdir()
    (run / "config.json").write_text(_config(shared["refs"]["absolute"]))
    (run / "model.onnx").write_bytes(b"onnx")
    (run / "metrics.json").write_text("{}")
    done = prunelab("deploy", str(run), home=shared["home"])
    assert done.returncode == 2 and "--trust-code" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not shared["marker"].exists()


@pytest.mark.parametrize("how", [("--trust-code",), ("--model", "MODEL")])
def test_the_user_can_allow_it(shared, how):
    """The flags really open the door: with either, the named file runs (and its factory's error is reported)."""
    folder, ref = shared["folder"], shared["refs"]["absolute"]
    (folder / "config.json").write_text(_config(ref))
    args = [a.replace("MODEL", ref) for a in how]
    done = prunelab("apply", "config.json", *args, "--out", "out", home=shared["home"], cwd=folder)
    assert done.returncode == 2 and "the hostile factory was called" in done.stderr
    assert shared["marker"].exists()


def test_a_sample_model_config_from_elsewhere_replays_without_a_flag(tmp_path):
    spec = get_spec("digits-mlp")
    config = PruneConfig(model="digits-mlp", method="unstructured", ratios={"fc1": 0.5},
                         model_fingerprint=spec.fingerprint)
    (tmp_path / "config.json").write_text(config.to_json())
    done = prunelab("apply", str(tmp_path / "config.json"), "--latency-batches", "1", "--out", str(tmp_path / "o"),
                    home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["pruned"]["nonzero_params"] > 0


def test_a_config_without_fingerprint_is_replayed_with_a_warning(tmp_path):
    config = PruneConfig(model="digits-mlp", method="unstructured", ratios={"fc1": 0.5})
    (tmp_path / "config.json").write_text(config.to_json())
    done = prunelab("apply", str(tmp_path / "config.json"), "--latency-batches", "1", "--out", str(tmp_path / "o"),
                    home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "model_fingerprint" in done.stderr and "not checked" in done.stderr


def test_the_dashboard_loads_no_model_by_a_name_it_was_handed(shared):
    """Only the sidebar form registers a user's model; a bare reference reaching the model cache is refused."""
    from core.errors import PruneLabError
    from dashboard import cache

    with pytest.raises(PruneLabError, match="Your own model"):
        cache.spec(shared["refs"]["absolute"])
    assert not shared["marker"].exists()

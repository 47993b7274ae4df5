"""Loading your own model in the dashboard: the sidebar's "Your own model…" form, uploads kept inside the
workspace, errors that leave the current model in place, and a pickle that runs only when trusted."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from streamlit.testing.v1 import AppTest
from torch import nn

from core import models
from dashboard import uploads
from dashboard.components.format import human
from dashboard.components.own_model import OWN
from tests.dashboard.nav import goto
from tests.dashboard.test_app import metric, open_app, wait_for_job

FACTORY = '''
"""A small CNN on scikit-learn's 8x8 digits, trained here (seeded) so its accuracy means something."""
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEPS = 300


def build():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = TensorDataset(x[order[:1400]], y[order[:1400]]), TensorDataset(x[order[1400:]], y[order[1400:]])
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model.train()
    step = 0
    while step < STEPS:
        for xb, yb in batches:
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimiser.step()
            step += 1
            if step == STEPS:
                break
    model.eval()
    return {
        "model": model,
        "example_input": x[:1],
        "eval_loader": DataLoader(test, batch_size=128),
        "train_loader": DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(1)),
    }
'''


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the repository holding the users' model files."""
    folder = tmp_path_factory.mktemp("user-models")
    (folder / "digits_cnn.py").write_text(textwrap.dedent(FACTORY))
    (folder / "broken.py").write_text("def build():\n    raise RuntimeError('no GPU in this sandbox')\n")
    return folder


def choose_own(at: AppTest) -> AppTest:
    return at.sidebar.selectbox(key="model").set_value(OWN).run()


def load(at: AppTest, ref: str, data: str = "") -> AppTest:
    """Fill the form's reference (and data path) and press Load."""
    at.sidebar.text_input(key="own-ref").input(ref)
    if data:
        at.sidebar.text_input(key="own-data-path").input(data)
    return at.sidebar.button(key="own-load").click().run()


def test_own_factory_model_loads_prunes_fine_tunes_and_measures(monkeypatch, tmp_path, models_dir):
    ref = f"{models_dir / 'digits_cnn.py'}:build"
    at = choose_own(open_app(monkeypatch, "digits-mlp", tmp_path))
    assert any("until your model loads" in c.value for c in at.sidebar.caption)
    at = load(at, ref)
    assert not at.exception and not at.error, [e.value for e in at.error]

    handle = at.sidebar.selectbox(key="model").value
    assert handle.startswith("user-")
    assert ref in at.sidebar.selectbox(key="model").options  # listed by its reference
    expected = models.load(ref)
    assert metric(at, "Parameters") == human(sum(p.numel() for p in expected.model.parameters()))
    assert float(metric(at, "Test accuracy").rstrip("%")) > 90  # trained in build(): a meaningful baseline

    goto(at, "tune").slider(key=f"ratio-all|{handle}|channel").set_value(0.5).run()
    assert not at.number_input(key="epochs").proto.disabled
    at.number_input(key="epochs").set_value(1).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("measured and saved" in s.value for s in at.success)

    run_dir = next((tmp_path / "runs").iterdir())
    assert handle in run_dir.name  # the handle, not the reference's slashes, names files
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["pruned"]["params"] < saved["baseline"]["params"]
    assert [m for m in goto(at, "results").metric if m.label == "Parameters"][-1].value == human(
        saved["pruned"]["params"])
    assert json.loads(goto(at, "export").json[0].value)["model"] == ref  # Export hands out a config the CLI can replay
    command = f"prunelab apply config.json --model {shlex.quote(ref)} --out pruned/"
    assert any(c.value == command for c in at.code)
    _replays(at.json[0].value, command, tmp_path / "replay", saved["pruned"]["params"])


def _replays(config: str, command: str, folder: Path, params: int) -> None:
    """The Export page's command, run as shown beside the downloaded config, rebuilds the same pruned model."""
    folder.mkdir()
    (folder / "config.json").write_text(config)
    argv = [sys.executable, "-m", "core.cli", *shlex.split(command)[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process (conftest): digits_cnn.py trains in build()
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((folder / "pruned" / "metrics.json").read_text())["pruned"]["params"] == params


def test_failing_factory_shows_its_error_and_keeps_the_current_model(monkeypatch, tmp_path, models_dir):
    at = open_app(monkeypatch, "digits-mlp", tmp_path)
    params = metric(at, "Parameters")
    at = load(choose_own(at), f"{models_dir / 'broken.py'}:build")
    assert not at.exception
    assert any("no GPU in this sandbox" in e.value for e in at.sidebar.error)
    assert metric(at, "Parameters") == params  # the pages still show digits-mlp
    assert at.sidebar.selectbox(key="model").options[-1] == OWN
    assert not any(o.startswith(str(models_dir)) for o in at.sidebar.selectbox(key="model").options)
    at = at.sidebar.selectbox(key="model").set_value("digits-mlp").run()
    assert not at.exception and not at.error and metric(at, "Parameters") == params


def test_pickled_model_needs_trust_warns_and_loads_with_uploaded_data(monkeypatch, tmp_path):
    digits = load_digits()
    pickled = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), pickled)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x=(digits.data[:300] / 16).astype(np.float32), y=digits.target[:300])

    at = choose_own(open_app(monkeypatch, "digits-mlp", tmp_path / "home"))
    at.sidebar.file_uploader(key="own-data-upload").set_value(("../../digits.npz", npz.read_bytes(), "application/zip"))
    at = load(at, str(pickled))
    assert any("trust" in e.value for e in at.sidebar.error)
    assert not at.sidebar.warning

    at = at.sidebar.checkbox(key="own-trust").check().run()
    assert any("runs whatever code it carries" in w.value for w in at.sidebar.warning)
    at = at.sidebar.button(key="own-load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Parameters") == human(64 * 32 + 32 + 32 * 10 + 10)
    assert any("Trust this pickle" in w.value for w in at.warning)  # the Model page keeps saying so
    saved = list((tmp_path / "home" / "uploads").iterdir())
    assert [p.name[uploads.PREFIX_CHARS:] for p in saved] == ["-digits.npz"]
    # evaluation data only: no fine-tuning, and the Tune page says why
    goto(at, "tune")
    assert at.number_input(key="epochs").value == 0 and at.number_input(key="epochs").proto.disabled
    assert any("needs training data" in c.value for c in at.caption)


@dataclass
class FakeUpload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


NASTY = ["../../etc/passwd", ".hidden", "a/b\\c.pt", "..", "/", "x" * 500 + ".SafeTensors", "con:\x00name.npz",
         "...pt", "C:\\Users\\me\\w.pth"]


@pytest.mark.parametrize("name", NASTY)
def test_upload_names_are_sanitised_and_stay_in_the_uploads_folder(monkeypatch, tmp_path, name):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    safe = uploads.safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert len(safe) <= uploads.MAX_NAME
    path = uploads.save(FakeUpload(name, b"weights"))
    assert path.parent == (tmp_path / "uploads").resolve() and path.read_bytes() == b"weights"
    assert path.name.endswith(safe)


def test_upload_names_keep_suffix_and_never_collide(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    assert uploads.safe_name("../../etc/passwd") == "passwd"
    assert uploads.safe_name("a/b\\c.pt") == "c.pt"
    assert uploads.safe_name("x" * 500 + ".SafeTensors").endswith("x.safetensors")  # core reads the suffix
    first, second = uploads.save(FakeUpload("w.pt", b"one")), uploads.save(FakeUpload("w.pt", b"two"))
    assert first != second and first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert uploads.save(FakeUpload("w.pt", b"one")) == first  # the same file uploaded again


def test_upload_over_the_limit_is_refused_and_nothing_is_written(monkeypatch, tmp_path, models_dir):
    monkeypatch.setattr(uploads, "UPLOAD_LIMIT_BYTES", 8)
    at = choose_own(open_app(monkeypatch, "digits-mlp", tmp_path))
    at.sidebar.file_uploader(key="own-weights-upload").set_value(("big.pt", b"0" * 64, "application/octet-stream"))
    at = load(at, f"{models_dir / 'digits_cnn.py'}:build")
    assert any("uploads are limited" in e.value for e in at.sidebar.error)
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())
    assert at.sidebar.selectbox(key="model").value == OWN and metric(at, "Parameters")


def test_a_factory_that_never_returns_is_stopped_at_the_time_limit(monkeypatch, tmp_path):
    """Loading used to run the factory in the session's own thread: one that never returned left the form on
    "Loading the model…" for ever, with no way out. Now it is check-loaded in a process stopped at the limit."""
    from tests.test_probe import FOREVER, alive, pids_of

    # long enough for the check process to import torch and reach the factory on a busy 2-core machine: with 3 s
    # it was stopped before the factory wrote its pid (CI, 2026-11-30), and nothing was left to check
    monkeypatch.setenv("PRUNELAB_LOAD_TIMEOUT_S", "10")
    pidfile = tmp_path / "pids"
    ref = f"{tmp_path / 'forever.py'}:build"
    (tmp_path / "forever.py").write_text(textwrap.dedent(FOREVER.format(pids=str(pidfile))))
    at = open_app(monkeypatch, "digits-mlp", tmp_path / "home")
    params = metric(at, "Parameters")
    at = choose_own(at)
    at.sidebar.text_input(key="own-ref").input(ref)
    at = at.sidebar.button(key="own-load").click().run(timeout=90)
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert "time limit of 10 s" in errors[0] and "PRUNELAB_LOAD_TIMEOUT_S" in errors[0]
    assert not any(alive(pid) for pid in pids_of(pidfile, 0))  # the factory and the process it started
    assert metric(at, "Parameters") == params  # the pages still show digits-mlp
    assert at.sidebar.button(key="own-load")  # and the form can load again

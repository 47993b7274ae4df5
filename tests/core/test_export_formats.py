"""The pruned model out in the user's own format (issue 13, point 4, PyTorch): a run keeps its pruned module's
weights (model.safetensors); `load_pruned` rebuilds the module from the unpruned one, the config and those weights;
the `.pt2` (torch.export) of every pruned sample model loads in a fresh Python process that never imports PruneLab
and equals onnxruntime's output; `prunelab export RUN --format onnx|pt2|safetensors` writes each of them."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file

from core import methods, schedule
from core.cli import main
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.data import random_inputs
from core.errors import PruneLabError
from core.export import deployable, export_onnx
from core.export_formats import load_pruned, pt2_bytes, stored_example, weights_bytes
from core.models import available
from core.plan import plan
from core.prune import apply
from core.spec import ModelSpec
from tests.conftest import get_spec

MODEL_FOR = {"head": "mnist-vit", "layer": "mnist-vit"}  # the smallest sample with units for the method
RATIO = 0.2  # a small cut: fast, and every method still removes something
PRUNELAB_PACKAGES = ("core", "dashboard", "sample_models")

# what a user runs: torch only. Fails if anything of PruneLab was imported on the way.
FRESH_PROCESS = f"""
import sys, torch
program = torch.export.load(sys.argv[1])
x = torch.load(sys.argv[2], weights_only=True)
y = program.module()(x)
ours = sorted(m for m in sys.modules if m.split(".")[0] in {PRUNELAB_PACKAGES!r})
assert not ours, ours
torch.save(y.detach(), sys.argv[3])
"""


def _call(*argv: object) -> tuple[int, str, str]:
    """main(argv) with stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _config(spec: ModelSpec, method: str, criterion: str = "l1") -> PruneConfig:
    ratio = None if method == "nm" else RATIO  # N:M's share is fixed by its pattern
    ratios, blocks = plan(spec, method, ratio, criterion=criterion)
    return PruneConfig(model=spec.name, method=method, ratios=ratios, remove_blocks=blocks, criterion=criterion,
                       model_fingerprint=spec.fingerprint)


def _run_in_fresh_python(pt2: Path, x: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    """The .pt2 run on x by a new interpreter (isolated: no PYTHONPATH, no current folder on sys.path)."""
    torch.save(x, tmp_path / "x.pt")
    done = subprocess.run([sys.executable, "-I", "-c", FRESH_PROCESS, str(pt2), str(tmp_path / "x.pt"),
                           str(tmp_path / "y.pt")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return torch.load(tmp_path / "y.pt", weights_only=True)


def _onnxruntime(onnx: bytes, x: torch.Tensor) -> np.ndarray:
    sess = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|, relative to the largest |b| when that exceeds 1 (as core.export.check_onnx measures)."""
    return float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))


# --- .pt2: loads without PruneLab and equals the ONNX output ------------------------------------------------


@pytest.mark.slow  # a channel cut, an ONNX export, a torch.export and a fresh interpreter: 10-40 s per model
def test_pt2_of_every_pruned_sample_loads_without_prunelab_and_equals_onnx(spec, tmp_path):
    _pt2_equals_onnx(spec, "channel", tmp_path)


@pytest.mark.slow  # 22.7 M parameters: the exports take ~30 s
@pytest.mark.skipif("minilm" not in available(), reason="the minilm extra is not installed")
def test_pt2_of_the_pruned_pretrained_transformer_equals_onnx(tmp_path):
    """The MiniLM sample (token ids in, 32 per row): masks, the method that works on any attention."""
    _pt2_equals_onnx(get_spec("minilm"), "unstructured", tmp_path)


def _pt2_equals_onnx(spec: ModelSpec, method: str, tmp_path: Path) -> None:
    pruned = deployable(apply(spec, _config(spec, method)).model)
    onnx, _ = export_onnx(pruned, spec.example_input)
    (tmp_path / "model.pt2").write_bytes(pt2_bytes(pruned, spec.example_input))
    x = random_inputs(spec.example_input, 3, torch.Generator().manual_seed(1))  # a batch it was not traced at
    got = _run_in_fresh_python(tmp_path / "model.pt2", x, tmp_path)
    assert got.shape[0] == 3
    assert _relative_gap(got.numpy(), _onnxruntime(onnx, x)) <= 1e-4


# --- load_pruned: the module back from the unpruned one, the config and the weights ------------------------


def _criterion(method: methods.Method) -> str:
    """A criterion that needs data where the method takes one: the rebuild must not (it replays shapes only)."""
    return "taylor" if "taylor" in method.criteria() else method.criteria()[0]


@pytest.mark.parametrize("name", methods.names())
def test_load_pruned_equals_the_pruned_model(name, tmp_path):
    spec = get_spec(MODEL_FOR.get(name, "digits-mlp"))
    config = _config(spec, name, _criterion(methods.get(name)))
    pruned = deployable(apply(spec, config).model)
    path = tmp_path / "model.safetensors"
    path.write_bytes(weights_bytes(pruned, spec.example_input))
    assert load_file(path).keys() == pruned.state_dict().keys()  # plain tensors: any safetensors reader opens it
    rebuilt = load_pruned(spec.model, config, path)  # the example input's shape comes from the file
    x = random_inputs(spec.example_input, 5, torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), pruned(x), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in pruned.parameters())


@pytest.mark.parametrize(("model", "method"), [("digits-mlp", "channel"), ("mnist-vit", "head")])
def test_load_pruned_rebuilds_an_iterative_run_with_fine_tuning(model, method, tmp_path):
    """Cut in three rounds with training between them, a run ends at the widths its config names: the one-shot
    replay gets the same shapes."""
    spec = get_spec(model)
    config = replace(_config(spec, method), schedule=Schedule("iterative", 3), finetune=FinetuneConfig(epochs=1))
    pruned = deployable(schedule.train(spec, config, lambda *_: None).model)
    (tmp_path / "w.safetensors").write_bytes(weights_bytes(pruned, spec.example_input))
    rebuilt = load_pruned(spec.model, config, tmp_path / "w.safetensors")
    x = random_inputs(spec.example_input, 5, torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), pruned(x), rtol=0, atol=1e-6)


def test_load_pruned_leaves_the_unpruned_model_alone(tmp_path):
    spec = get_spec("digits-mlp")
    config = _config(spec, "channel")
    (tmp_path / "w.safetensors").write_bytes(weights_bytes(deployable(apply(spec, config).model), spec.example_input))
    before = {k: v.clone() for k, v in spec.model.state_dict().items()}
    load_pruned(spec.model, config, tmp_path / "w.safetensors")
    after = spec.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_load_pruned_refuses_weights_of_another_cut_in_one_line(tmp_path):
    spec = get_spec("digits-mlp")
    half = PruneConfig(model=spec.name, method="channel", ratios={"fc1": 0.5, "fc2": 0.5})
    (tmp_path / "w.safetensors").write_bytes(weights_bytes(deployable(apply(spec, half).model), spec.example_input))
    with pytest.raises(PruneLabError, match="do not fit") as caught:
        load_pruned(spec.model, _config(spec, "channel"), tmp_path / "w.safetensors")
    assert "\n" not in str(caught.value)


def test_the_weights_file_keeps_the_example_input_it_needs_to_rebuild(tmp_path):
    """Token ids keep their dtype and largest id (random calibration inputs must be ids the model has)."""
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    ids = torch.tensor([[5, 3, 9]])
    (tmp_path / "w.safetensors").write_bytes(weights_bytes(model, ids))
    example = stored_example(tmp_path / "w.safetensors")
    assert example.shape == (1, 3) and example.dtype == torch.int64 and int(example.max()) == 9
    floats = torch.zeros(1, 1, 8, 8)
    (tmp_path / "f.safetensors").write_bytes(weights_bytes(torch.nn.Flatten(), floats))
    assert stored_example(tmp_path / "f.safetensors").shape == (1, 1, 8, 8)


def test_tied_weights_are_saved(tmp_path):
    """Two names for one tensor (tied embeddings): safetensors refuses shared memory unless they are copies."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    (tmp_path / "w.safetensors").write_bytes(weights_bytes(model, torch.zeros(1, 4)))
    state = load_file(tmp_path / "w.safetensors")
    assert torch.equal(state["0.weight"], state["1.weight"])


# --- a run keeps its weights; `prunelab export` writes each format --------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One recorded digits-mlp channel run (no fine-tuning, latency at batch 1 only: fast)."""
    out = tmp_path_factory.mktemp("export") / "run"
    code, _, err = _call("prune", "digits-mlp", "--method", "channel", "--ratio", RATIO, "--finetune-epochs", 0,
                         "--latency-batches", 1, "--out", out)
    assert code == 0, err
    return out


def test_a_run_saves_its_pruned_weights(run_dir):
    spec = get_spec("digits-mlp")
    config = PruneConfig.load(run_dir / "config.json")
    rebuilt = load_pruned(spec.model, config, run_dir / "model.safetensors")
    x = random_inputs(spec.example_input, 4, torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = rebuilt(x).numpy()
    assert _relative_gap(got, _onnxruntime((run_dir / "model.onnx").read_bytes(), x)) <= 1e-4
    assert json.loads((run_dir / "metrics.json").read_text())["pruned"]["params"] == sum(
        p.numel() for p in rebuilt.parameters())


def test_cli_export_writes_each_format(run_dir, tmp_path):
    code, out, err = _call("export", run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert (tmp_path / "m.onnx").read_bytes() == (run_dir / "model.onnx").read_bytes()
    assert str(tmp_path / "m.onnx") in out
    code, _, err = _call("export", run_dir, "--format", "safetensors", "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    assert load_file(tmp_path / "m.safetensors").keys() == load_file(run_dir / "model.safetensors").keys()
    code, out, err = _call("export", run_dir, "--format", "pt2", "--out", tmp_path / "m.pt2")
    assert code == 0, err
    x = random_inputs(get_spec("digits-mlp").example_input, 3, torch.Generator().manual_seed(4))
    got = torch.export.load(tmp_path / "m.pt2").module()(x).detach().numpy()
    assert _relative_gap(got, _onnxruntime((run_dir / "model.onnx").read_bytes(), x)) <= 1e-4


def test_cli_export_takes_a_store_id(run_dir, tmp_path):
    code, out, _ = _call("experiments", "list", "--json")
    (run_id,) = [e["id"] for e in json.loads(out) if Path(e["folder"]) == run_dir.resolve()]
    code, _, err = _call("export", run_id, "--format", "safetensors", "--out", tmp_path / "w.safetensors")
    assert code == 0, err
    assert (tmp_path / "w.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()


@pytest.mark.parametrize("fmt", ["safetensors", "pt2"])
def test_an_older_run_without_weights_gives_one_line(run_dir, tmp_path, fmt):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    (old / "model.safetensors").unlink()
    code, out, err = _call("export", old, "--format", fmt, "--out", tmp_path / f"m.{fmt}")
    assert code == 2 and out == ""
    assert err.startswith("prunelab: error: ") and "model.safetensors" in err and len(err.splitlines()) == 1
    assert not (tmp_path / f"m.{fmt}").exists()


def test_cli_export_of_a_missing_run_gives_one_line(tmp_path):
    code, _, err = _call("export", tmp_path / "nowhere", "--format", "onnx")
    assert code == 2 and len(err.splitlines()) == 1 and "nowhere" in err


def test_pt2_of_a_users_model_needs_it_named_on_the_command_line(run_dir, tmp_path):
    """A config naming a model file: the file runs only if the user names it (--model), never because a config
    says so."""
    factory = tmp_path / "mine.py"
    marker = tmp_path / "imported"
    factory.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                       "from core.models import load\n\ndef build():\n    return load('digits-mlp')\n")
    theirs = tmp_path / "theirs"
    shutil.copytree(run_dir, theirs)
    config = json.loads((theirs / "config.json").read_text())
    (theirs / "config.json").write_text(json.dumps({**config, "model": f"{factory}:build"}))
    code, _, err = _call("export", theirs, "--format", "pt2", "--out", tmp_path / "m.pt2")
    assert code == 2 and "--model" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "m.pt2").exists()
    code, _, err = _call("export", theirs, "--format", "pt2", "--model", f"{factory}:build", "--out",
                         tmp_path / "m.pt2")
    assert code == 0, err
    assert marker.exists() and (tmp_path / "m.pt2").is_file()

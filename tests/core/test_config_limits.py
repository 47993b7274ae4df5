"""Config values that pass a type check but cannot work are refused with the allowed range; config files are
read the same way by the CLI and the dashboard (BOM, size, nesting, huge integers), each problem one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import LIMITS, FinetuneConfig, PruneConfig, Schedule, fmt_limit, read_config_bytes
from core.errors import PruneLabError
from core.sensitivity import SweepSpec

ROOT = Path(__file__).resolve().parents[2]


def _config(**changes) -> dict:
    data = PruneConfig("digits-mlp", "unstructured", {"fc1": 0.5}).to_dict()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = data
        for p in parents:
            target = target[p]
        target[leaf] = value
    return data


@pytest.mark.parametrize(("field", "value"), [
    ("finetune.temperature", 1e-300), ("finetune.temperature", 1e9), ("seed", 2**200), ("seed", -1),
    ("finetune.batch_size", 10**12), ("calibration_samples", 10**15), ("finetune.epochs", 10**6),
    ("finetune.lr", 1e-300), ("finetune.lr", 1e6), ("schedule.steps", 10**9), ("schedule.update_every", 10**12),
    ("finetune.alpha", 2.0),
])
def test_out_of_range_values_name_the_allowed_range(field, value):
    leaf = field.rsplit(".", 1)[-1]
    with pytest.raises(PruneLabError) as caught:
        PruneConfig.from_dict(_config(**{field: value}))
    low, high = LIMITS[leaf]
    message = str(caught.value)
    assert leaf in message and f"from {fmt_limit(low)} to {fmt_limit(high)}" in message
    assert len(message.splitlines()) == 1 and len(message) < 300


def test_every_numeric_field_has_limits():
    numeric = {f for cls in (FinetuneConfig, Schedule) for f, v in vars(cls()).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric | {"seed", "calibration_samples"} <= set(LIMITS)


def test_values_at_the_limits_are_accepted():
    for leaf, dotted in (("temperature", "finetune.temperature"), ("seed", "seed"),
                         ("batch_size", "finetune.batch_size"), ("calibration_samples", "calibration_samples")):
        low, high = LIMITS[leaf]
        for value in (low, high):
            PruneConfig.from_dict(_config(**{dotted: value if leaf == "temperature" else int(value)}))


def test_sweep_settings_are_bounded_too():
    with pytest.raises(PruneLabError, match="seed"):
        SweepSpec("digits-mlp", "f", "channel", seed=2**200)
    with pytest.raises(PruneLabError, match="calibration_samples"):
        SweepSpec("digits-mlp", "f", "channel", calibration_samples=10**15)
    with pytest.raises(PruneLabError, match="eval_samples"):
        SweepSpec("digits-mlp", "f", "channel", eval_samples=10**15)


GOOD = PruneConfig("digits-mlp", "unstructured", {"fc1": 0.5}).to_json().encode()


@pytest.mark.parametrize(("data", "expect"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"version": 2, "seed": ' + b"9" * 5000 + b"}", "digits"),
    (b"\xff\xfe{}", "UTF-8"),
    (b" " * 2_000_000, "too large"),
    (b"null", "JSON object"),
])
def test_bad_bytes_are_one_line(data, expect):
    with pytest.raises(PruneLabError, match=expect) as caught:
        read_config_bytes(data)
    assert len(str(caught.value).splitlines()) == 1 and len(str(caught.value)) < 400


def test_a_byte_order_mark_is_read_as_everywhere_else():
    assert read_config_bytes(b"\xef\xbb\xbf" + GOOD) == PruneConfig.from_json(GOOD.decode())


def test_loading_a_device_or_a_huge_file_refuses_before_reading(tmp_path):
    with pytest.raises(PruneLabError, match="not a regular file"):
        PruneConfig.load("/dev/zero")
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(50 * 2**30)  # 50 GB sparse: must be refused from its size, not read
    with pytest.raises(PruneLabError, match="too large"):
        PruneConfig.load(big)


def _cli(*args: str, home: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


@pytest.mark.parametrize("case", ["dev-zero", "bom", "nested", "digits", "temperature", "seed"])
def test_cli_gives_one_line_for_each(case, tmp_path):
    path = tmp_path / "config.json"
    if case == "dev-zero":
        path = Path("/dev/zero")
    elif case == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + GOOD)
    elif case == "nested":
        path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    elif case == "digits":
        path.write_bytes(b'{"version": 2, "seed": ' + b"9" * 5000 + b"}")
    else:
        field = "finetune.temperature" if case == "temperature" else "seed"
        path.write_text(json.dumps(_config(**{field: 1e-300 if case == "temperature" else 2**200})))
    done = _cli("apply", str(path), "--latency-batches", "1", "--out", str(tmp_path / "o"), home=tmp_path / "h")
    if case == "bom":  # read exactly like the dashboard reads it: the BOM is skipped
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "internal error" not in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "value"), [("--temperature", "1e-300"), ("--seed", str(2**200)),
                                               ("--lr", "nan"), ("--finetune-epochs", "1000000")])
def test_cli_options_are_bounded_before_any_work(option, value, tmp_path):
    extra = ["--distill", "--finetune-epochs", "1"] if option == "--temperature" else []
    done = _cli("prune", "digits-mlp", "--method", "unstructured", "--ratio", "0.5", option, value, *extra,
                "--out", str(tmp_path / "o"), home=tmp_path / "h")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "internal error" not in done.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`prunelab ... | head` : the reader goes away before the output is written; no traceback, no message."""
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path / "h")}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "layers", "mnist-resnet", "--method", "unstructured"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head` exiting before the command prints
    _, err = proc.communicate(timeout=120)
    assert b"BrokenPipe" not in err and b"internal error" not in err and b"Traceback" not in err, err
    assert proc.returncode != 1


def test_a_diverging_fine_tune_fails_instead_of_yielding_nan_weights():
    """Inputs of 1e30 overflow the logits: the loss is NaN from the first step, and the run must stop there
    (before, the NaN weights were measured and recorded as a finished run)."""
    import torch
    from torch import nn

    from core.finetune import Recipe, fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(32, 4) * 1e30, torch.randint(0, 3, (32,))
    with pytest.raises(PruneLabError, match="diverged"):
        fit(model, x, y, Recipe(epochs=1, lr=0.01, batch_size=16))


def test_a_sensitivity_table_from_a_device_or_a_huge_file_is_refused_unread(tmp_path):
    from core.sensitivity import read_table

    with pytest.raises(PruneLabError, match="not a regular file"):
        read_table("/dev/zero")
    big = tmp_path / "sens.csv"
    with big.open("wb") as f:
        f.truncate(50 * 2**30)
    with pytest.raises(PruneLabError, match="too large"):
        read_table(big)

"""`prunelab sensitivity` and `prunelab allocate`: a sweep CSV that read_table accepts (cached on a second run), a
config meeting the budget that `prunelab apply` replays within it, every strategy and locks, and one-line errors
with exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from core.cli import main
from core.config import PruneConfig
from core.estimate import build_cost_model
from core.sensitivity import read_table
from tests.conftest import get_spec

SWEEP = ["sensitivity", "digits-mlp", "--granularity", "channel", "--grid", "0.25,0.5", "--eval-samples", "200"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("PRUNELAB_DEBUG", raising=False)


def _call(*argv) -> tuple[int, str, str]:
    """main(argv) with its own stdout/stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _error_line(code: int, err: str) -> str:
    """The one stderr line of a user error (progress bars may precede it on stderr, each ending in \\r)."""
    assert code == 2, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "prunelab: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("prunelab: error: "), err
    assert err.endswith(errors[0] + "\n"), err  # the message is the last, whole line
    return errors[0]


def _one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    line = _error_line(code, err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in line, (fragment, line)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A private PRUNELAB_HOME for this module, so "from the cache" depends on these tests only."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cli-sensitivity-home")
    mp.setenv("PRUNELAB_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def swept(home, tmp_path_factory) -> tuple[Path, tuple[int, str, str], tuple[int, str, str]]:
    """The sweep CSV, and the outputs of a first and a second (cached) identical run."""
    folder = tmp_path_factory.mktemp("sweep")
    first = _call(*SWEEP, "--out", folder / "first.csv")
    second = _call(*SWEEP, "--out", folder / "second.csv")
    return folder / "first.csv", first, second


@pytest.fixture(scope="module")
def allocated(swept, tmp_path_factory) -> tuple[Path, tuple[int, str, str]]:
    path = tmp_path_factory.mktemp("allocate") / "config.json"
    return path, _call("allocate", "digits-mlp", "--sensitivity", swept[0], "--target-flops", "2", "--out", path)


def _cost_model(method: str = "channel"):
    spec = get_spec("digits-mlp")
    return build_cost_model(spec.model, spec.example_input, method)


# ---- sensitivity ---------------------------------------------------------------------------------------


def test_sensitivity_writes_a_readable_csv(swept):
    path, (code, out, err), _ = swept
    assert code == 0, err
    table = read_table(path, "digits-mlp")
    assert len(table) == 4
    assert sorted(set(table["unit"])) == ["fc1", "fc2"]
    assert sorted(set(table["ratio"])) == [0.25, 0.5]
    assert set(table["granularity"]) == {"channel"} and set(table["criterion"]) == {"l1"}
    lines = out.splitlines()
    assert lines[0].startswith("4 rows (2 units x 2 ratios)") and str(path) in lines[0]
    assert "from the cache" not in out
    assert "most sensitive" in out
    assert "error" not in err


def test_second_sweep_comes_from_the_cache(swept):
    path, _, (code, out, err) = swept
    assert code == 0, err
    assert "4 rows" in out and "from the cache" in out
    second = read_table(path.with_name("second.csv"), "digits-mlp")
    assert second.equals(read_table(path, "digits-mlp"))


def test_no_cache_measures_again(swept, tmp_path):
    code, out, err = _call(*SWEEP, "--no-cache", "--out", tmp_path / "again.csv")
    assert code == 0, err
    assert "from the cache" not in out
    assert read_table(tmp_path / "again.csv", "digits-mlp").equals(read_table(swept[0], "digits-mlp"))


def test_unstructured_sweep(home, tmp_path):
    out_csv = tmp_path / "unstructured.csv"
    code, out, err = _call("sensitivity", "digits-mlp", "--granularity", "unstructured", "--grid", "0.5",
                           "--eval-samples", "100", "--calibration-samples", "32", "--out", out_csv)
    assert code == 0, err
    table = read_table(out_csv, "digits-mlp")
    assert list(table["unit"]) == ["fc1", "fc2", "fc3"] and set(table["granularity"]) == {"unstructured"}
    assert out.startswith("3 rows (3 units x 1 ratios)")


# ---- allocate and apply --------------------------------------------------------------------------------


def test_allocate_writes_a_config_meeting_the_target(allocated):
    path, (code, out, err) = allocated
    assert code == 0, err
    spec = get_spec("digits-mlp")
    config = PruneConfig.load(path)
    assert config.model == "digits-mlp" and config.method == "channel" and config.criterion == "l1"
    assert config.model_fingerprint == spec.fingerprint
    assert config.ratios and all(0 < r <= 0.9 for r in config.ratios.values())
    assert set(config.ratios) <= {"fc1", "fc2"}
    cm = _cost_model()
    assert cm.estimate(config.ratios)["flops"] <= cm.estimate({})["flops"] / 2
    assert "sensitivity allocation for flops 2.0: met" in out
    assert "predicted accuracy drop" in out
    assert f"wrote {path}" in out


def test_apply_replays_the_allocation_within_budget(allocated, tmp_path):
    path, (code, _, err) = allocated
    assert code == 0, err
    code, out, err = _call("apply", path, "--out", tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["pruned"]["flops"] <= metrics["baseline"]["flops"] / 2
    assert metrics["pruned"]["flops"] == _cost_model().estimate(PruneConfig.load(path).ratios)["flops"]
    assert PruneConfig.load(tmp_path / "run" / "config.json").ratios == PruneConfig.load(path).ratios


@pytest.mark.parametrize("strategy", ["uniform", "global", "sensitivity"])
def test_every_strategy(swept, tmp_path, strategy):
    path = tmp_path / "config.json"
    code, out, err = _call("allocate", "digits-mlp", "--sensitivity", swept[0], "--target-params", "2",
                           "--strategy", strategy, "--out", path)
    assert code == 0, err
    assert out.startswith(f"{strategy} allocation for params 2.0: met")
    config = PruneConfig.load(path)
    cm = _cost_model()
    assert cm.estimate(config.ratios)["params"] <= cm.estimate({})["params"] / 2
    if strategy == "uniform":
        assert len(set(config.ratios.values())) == 1 and set(config.ratios) == {"fc1", "fc2"}


@pytest.mark.parametrize("strategy", ["uniform", "global", "sensitivity"])
def test_lock_holds_a_unit(swept, tmp_path, strategy):
    path = tmp_path / "config.json"
    code, _, err = _call("allocate", "digits-mlp", "--sensitivity", swept[0], "--target-flops", "2",
                         "--strategy", strategy, "--lock", "fc1=0.25", "--out", path)
    assert code == 0, err
    config = PruneConfig.load(path)
    assert config.ratios["fc1"] == 0.25
    cm = _cost_model()
    assert cm.estimate(config.ratios)["flops"] <= cm.estimate({})["flops"] / 2


def test_min_and_max_ratio_bound_every_unit(swept, tmp_path):
    path = tmp_path / "config.json"
    code, _, err = _call("allocate", "digits-mlp", "--sensitivity", swept[0], "--target-flops", "1.5",
                         "--min-ratio", "0.1", "--max-ratio", "0.6", "--out", path)
    assert code == 0, err
    ratios = PruneConfig.load(path).ratios
    assert set(ratios) == {"fc1", "fc2"} and all(0.1 <= r <= 0.6 for r in ratios.values()), ratios


def test_impossible_target_writes_the_closest_config(swept, tmp_path):
    path = tmp_path / "config.json"
    code, out, err = _call("allocate", "digits-mlp", "--sensitivity", swept[0], "--target-flops", "1000",
                           "--max-ratio", "0.5", "--out", path)
    line = _error_line(code, err)
    assert "cannot be met" in line
    assert "NOT met" in out
    ratios = PruneConfig.load(path).ratios
    assert ratios and all(0 < r <= 0.5 for r in ratios.values())


# ---- errors ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_csvs(swept, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    text = swept[0].read_text()
    paths = {"missing": folder / "missing.csv", "corrupt": folder / "corrupt.csv", "columns": folder / "columns.csv",
             "truncated": folder / "truncated.csv", "text": folder / "text.csv", "good": swept[0],
             "dir": folder / "a-directory"}
    paths["corrupt"].write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n")
    paths["columns"].write_text("layer,score\nfc1,0.5\n")
    paths["truncated"].write_text(text[: len(text) * 2 // 3])
    header, *rows = text.splitlines()
    rows[0] = rows[0].replace(",0.25,", ",abc,", 1)
    paths["text"].write_text("\n".join([header, *rows]) + "\n")
    paths["dir"].mkdir()
    return paths


ALLOCATE = ["allocate", "digits-mlp", "--sensitivity"]
ERRORS = {
    "other-model": (["allocate", "mnist-resnet", "--sensitivity", "{good}", "--target-flops", "2"],
                    ["for digits-mlp, not mnist-resnet"]),
    "missing-csv": (ALLOCATE + ["{missing}", "--target-flops", "2"], ["missing.csv"]),
    "corrupt-csv": (ALLOCATE + ["{corrupt}", "--target-flops", "2"], ["corrupt.csv"]),
    "csv-without-columns": (ALLOCATE + ["{columns}", "--target-flops", "2"], ["not a PruneLab sensitivity table"]),
    "no-target": (ALLOCATE + ["{good}"], ["--target-flops"]),
    "two-targets": (ALLOCATE + ["{good}", "--target-flops", "2", "--target-params", "2"], ["not allowed"]),
    "target-flops-0": (ALLOCATE + ["{good}", "--target-flops", "0"], ["positive"]),
    "target-flops-0.5": (ALLOCATE + ["{good}", "--target-flops", "0.5"], ["at least 1"]),
    "target-flops-nan": (ALLOCATE + ["{good}", "--target-flops", "nan"], ["positive"]),
    "target-flops-abc": (ALLOCATE + ["{good}", "--target-flops", "abc"], ["'abc'"]),
    "lock-unknown-unit": (ALLOCATE + ["{good}", "--target-flops", "2", "--lock", "fc9=0.5"], ["fc9"]),
    "lock-without-ratio": (ALLOCATE + ["{good}", "--target-flops", "2", "--lock", "fc1"], ["UNIT=RATIO"]),
    "lock-ratio-1": (ALLOCATE + ["{good}", "--target-flops", "2", "--lock", "fc1=1"], ["below 1"]),
    "min-above-max": (ALLOCATE + ["{good}", "--target-flops", "2", "--min-ratio", "0.6", "--max-ratio", "0.4"],
                      ["above its maximum"]),
    "strategy-unknown": (ALLOCATE + ["{good}", "--target-flops", "2", "--strategy", "magic"], ["'magic'"]),
    "size-target-unstructured": None,  # built in the test: needs an unstructured CSV
    "grid-0-1": (SWEEP[:4] + ["--grid", "0,1"], ["between 0 and 1"]),
    "grid-abc": (SWEEP[:4] + ["--grid", "abc"], ["'abc'"]),
    "grid-empty": (SWEEP[:4] + ["--grid", ","], ["between 0 and 1"]),
    "eval-samples-0": (SWEEP[:4] + ["--eval-samples", "0"], ["positive integer"]),
    "granularity-foo": (["sensitivity", "digits-mlp", "--granularity", "foo"], ["'foo'"]),
    "sensitivity-unknown-model": (["sensitivity", "nope"], ["unknown model 'nope'"]),
    "out-is-a-directory": (SWEEP, ["is a directory"]),
}


@pytest.mark.parametrize("case", sorted(c for c, v in ERRORS.items() if v is not None))
def test_errors_give_one_line_and_exit_2(case, bad_csvs, tmp_path):
    argv, fragments = ERRORS[case]
    out_path = bad_csvs["dir"] if case == "out-is-a-directory" else tmp_path / "out.file"
    argv = [a.format(**bad_csvs) for a in argv] + ["--out", str(out_path)]
    code, out, err = _call(*argv)
    _one_line_error(code, out, err, *fragments)
    assert not (tmp_path / "out.file").exists()
    assert list(bad_csvs["dir"].iterdir()) == []


def test_size_target_with_an_unstructured_table_is_refused(home, tmp_path):
    table = tmp_path / "unstructured.csv"
    code, _, err = _call("sensitivity", "digits-mlp", "--granularity", "unstructured", "--grid", "0.5",
                         "--eval-samples", "50", "--calibration-samples", "16", "--out", table)
    assert code == 0, err
    code, out, err = _call(*ALLOCATE, table, "--target-size-mb", "0.01", "--out", tmp_path / "config.json")
    _one_line_error(code, out, err, "masks do not shrink")
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("case", ["truncated", "text"])
def test_allocate_refuses_a_damaged_csv(bad_csvs, tmp_path, case):
    code, out, err = _call(*ALLOCATE, bad_csvs[case], "--target-flops", "2", "--out", tmp_path / "config.json")
    _one_line_error(code, out, err, f"{case}.csv")
    assert not (tmp_path / "config.json").exists()


def test_sensitivity_out_in_a_missing_directory_says_why(home, tmp_path):
    code, out, err = _call(*SWEEP, "--out", tmp_path / "no-such-dir" / "x.csv")
    line = _error_line(code, err)
    assert "x.csv" in line
    assert not line.rstrip().endswith("None"), line


def test_allocate_out_pointing_to_a_directory_is_a_user_error(swept, tmp_path):
    (tmp_path / "adir").mkdir()
    code, out, err = _call(*ALLOCATE, swept[0], "--target-flops", "2", "--out", tmp_path / "adir")
    _one_line_error(code, out, err, "adir")

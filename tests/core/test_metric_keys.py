"""Metric keys are named and parsed in one module (core.metric_keys), and its typed view reads metrics.json
files as runs write them, unchanged.

The key format (`torch_latency_p90_ms_batch32`) used to be built or parsed in five places (the CLI's table, the
recorder in core.experiment, the dashboard's metric tiles, the Results charts, the hardware and Tune panels); a
source scan keeps it in one. The round trip is checked on every key a real run writes.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from core import metric_keys
from core.cli import main
from core.metric_keys import LatencyKey, ModelMetrics, RunMetrics, latency_key, parse_latency_key
from dashboard.components.charts import compared

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "core" / "metric_keys.py"
# a whole key of the latency format other than the plain b1 median "latency_ms" (also a store column and a
# solver target kind, read by name), or a fragment that only serves to build or parse one
WHOLE_KEY = re.compile(r"(torch_)?latency(_p90)?_ms(_batch\d+)?")
FRAGMENTS = {"torch_", "_batch", "latency_p90_ms"}
TEMPLATE = re.compile(r"latency(_p90)?_ms|_batch\{\}|torch_\{\}")  # an f-string's text, "{}" per placeholder


def _template(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}  # seen as a template
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and TEMPLATE.search(_template(node)):
            found.append((node.lineno, f"f{_template(node)!r}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts and (
                node.value in FRAGMENTS or (WHOLE_KEY.fullmatch(node.value) and node.value != "latency_ms")):
            found.append((node.lineno, repr(node.value)))
    return [f"{line}: {text}" for line, text in sorted(found)]


def test_the_latency_key_format_is_built_and_parsed_only_in_core_metric_keys():
    offenders = {}
    for folder in ("core", "dashboard"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != OWNER and (found := _offences(path)):
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, "key format outside core/metric_keys.py:\n" + json.dumps(offenders, indent=1)


def test_the_scan_sees_each_way_of_building_a_key(tmp_path):
    """The scan itself: each way the five places built keys is caught, labels and plain names are not."""
    sample = tmp_path / "sample.py"
    sample.write_text('a = f"{prefix}latency_ms" + ("" if b == 1 else f"_batch{b}")\n'
                      'b = m["torch_" + key]\n'
                      'c = ("latency_ms_batch32", "torch_latency_ms")\n'
                      'd = f"{p}latency_p90_ms{s}"\n'
                      'ok = (m["latency_ms"], f"latency ms (batch {b})", "latency_batches", "torch latency")\n')
    assert [o.split(":")[0] for o in _offences(sample)] == ["1", "1", "2", "3", "3", "4"]


# --- names and parses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "parsed"), [
    ("latency_ms", LatencyKey("onnxruntime", "median", 1)),
    ("latency_p90_ms", LatencyKey("onnxruntime", "p90", 1)),
    ("latency_ms_batch32", LatencyKey("onnxruntime", "median", 32)),
    ("torch_latency_p90_ms_batch32", LatencyKey("torch", "p90", 32)),
    ("torch_latency_ms", LatencyKey("torch", "median", 1)),
])
def test_latency_keys_name_and_parse(key, parsed):
    assert parse_latency_key(key) == parsed
    assert str(parsed) == key
    assert latency_key(parsed.batch, parsed.stat, parsed.runtime) == key


@pytest.mark.parametrize("key", ["latency_ms_batch1", "latency_ms_batch0", "latency_ms_batch032", "params",
                                 "latency_threads", "latency_batches", "latency_ms_batch", "cuda_latency_ms",
                                 "latency_p50_ms", "torch_latency_ms_batch-2"])
def test_other_strings_are_not_latency_keys(key):
    """One spelling per key: batch 1 has no suffix, no leading zeros, no unknown runtime or statistic."""
    assert parse_latency_key(key) is None


def test_a_latency_key_refuses_what_it_cannot_spell():
    with pytest.raises(ValueError):
        LatencyKey("onnxruntime", "median", 0)
    with pytest.raises(ValueError):
        LatencyKey("cuda", "median", 1)  # type: ignore[arg-type]


# --- every key a real run writes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """metrics.json of a real (quick) CLI run, timed at batches 1 and 8."""
    out = tmp_path_factory.mktemp("keys") / "run"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["prune", "digits-mlp", "--method", "channel", "--ratio", "0.5", "--finetune-epochs", "0",
                     "--latency-batches", "1,8", "--out", str(out)])
    assert code == 0, err.getvalue()
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_every_key_a_run_writes_is_named_by_the_module(written):
    for part in ("baseline", "pruned"):
        keys = set(written[part])
        latency = {k for k in keys if parse_latency_key(k) is not None}
        assert keys - latency <= set(metric_keys.NAMED), (part, keys - latency - set(metric_keys.NAMED))
        assert latency == {str(LatencyKey(r, s, b)) for r in ("onnxruntime", "torch") for s in ("median", "p90")
                           for b in (1, 8)}
        for key in latency:
            assert str(parse_latency_key(key)) == key


def test_the_typed_view_reads_a_run_and_writes_it_back_unchanged(written):
    run = RunMetrics.from_dict(written)
    assert run.to_dict() == written
    for part, view in (("baseline", run.baseline), ("pruned", run.pruned)):
        raw = written[part]
        assert view.params == raw["params"] and view.flops == raw["flops"]
        assert view.size_bytes == raw["size_bytes"] and view.accuracy == raw["accuracy"]
        assert view.latency_batches == (1, 8)
        assert view.latency_ms(8, "p90", "torch") == raw["torch_latency_p90_ms_batch8"]
        assert view.latency_ms(32) is None  # not measured: absent, not zero
        assert ModelMetrics.from_dict(raw).to_dict() == raw


def test_an_old_run_without_batches_or_onnx_reads_with_its_old_defaults():
    """A metrics.json from before latency_batches was recorded (batches 1 and 32 were always timed), and one
    whose export failed (torch figures only): both load, and write back as they were."""
    old = {"params": 10, "flops": 20, "size_bytes": 40, "accuracy": None, "loss": None,
           "torch_latency_ms": 0.5, "torch_latency_p90_ms": 0.6, "onnx_error": "export failed",
           "some_future_key": [1, 2]}
    view = ModelMetrics.from_dict(old)
    assert view.latency_batches == (1, 32)
    assert view.latency_ms(1) is None and view.latency_ms(1, runtime="torch") == 0.5
    assert view.onnx_error == "export failed" and view.accuracy is None
    assert view.to_dict() == old
    damaged = ModelMetrics.from_dict({"params": "many", "latency_ms": float("nan"), "latency_batches": "x"})
    assert damaged.params is None and damaged.latency_ms(1) is None and damaged.latency_batches == (1, 32)


def test_the_results_comparison_lists_every_batch_the_run_timed(written):
    """Results compares the latency at each batch the run timed (here 1 and 8), onnxruntime before torch; it
    used to list batches 1 and 32 whatever was timed, so a b8 figure never showed."""
    rows = compared(written["baseline"], written["pruned"])
    latency = [(key, label) for key, label, unit in rows if unit == "ms"]
    assert latency == [("latency_ms", "latency b1 (median)"), ("latency_ms_batch8", "latency b8 (median)"),
                       ("torch_latency_ms", "eager torch b1 (median)"),
                       ("torch_latency_ms_batch8", "eager torch b8 (median)")]
    assert [key for key, _, _ in rows[:5]] == ["size_bytes", "onnx_bytes", "params", "nonzero_params", "flops"]

"""The Experiments page driven through AppTest: the store's experiments of a model listed and filtered, two
compared, the Pareto front drawn as core.store computes it, delete behind a confirmation (and refused outside
the workspace), downloads equal to the run's files, and configs (recorded or uploaded) loaded into the Tune
sliders — bad uploads show the engine's one-line error and change nothing."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core import experiment, runs
from core.config import PruneConfig
from core.experiment import RunOutput
from core.store import Store
from dashboard.components.sliders import slider_key
from dashboard.components.text import md
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import chart_specs, open_app

MODEL = "digits-mlp"
RATIOS = ({"fc1": 0.25}, {"fc1": 0.5, "fc2": 0.5}, {"fc1": 0.8, "fc2": 0.8, "fc3": 0.8})
METHODS = ("channel", "channel", "unstructured")


@pytest.fixture(scope="module")
def outputs() -> list[RunOutput]:
    """Three measured digits-mlp runs (two channel, one unstructured), computed once and written per test."""
    spec = get_spec(MODEL)
    base = experiment.baseline(spec)
    return [experiment.run(spec, PruneConfig(MODEL, method, ratios, model_fingerprint=spec.fingerprint), base=base)
            for method, ratios in zip(METHODS, RATIOS, strict=True)]


def record(out: RunOutput) -> str:
    """Write a run into a fresh run folder of the workspace and record it as the app does; its store id."""
    run_dir = runs.new_run_dir(MODEL, out.config.method)
    with runs.record(run_dir, out.config) as finish:
        out.write(run_dir)
        finish(json.loads(out.metrics_json()))
    return Store().id_for_folder(run_dir)


@pytest.fixture
def ids(monkeypatch, tmp_path, outputs) -> list[str]:
    """The three runs recorded in a private workspace (tmp_path), oldest first."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    return [record(out) for out in outputs]


FRAMES = {"exp-table": ("id", "method", "criterion", "status"), "exp-diff": ("kind", "name", "A: "),
          "exp-numbers": ("metric", "A: ")}  # how each table of the tab starts (st.dataframe has no key to find it)


def frame(at: AppTest, which: str) -> pd.DataFrame:
    """One of the Experiments page's tables, found by the start of its column names."""
    start = FRAMES[which]
    return next(df.value for df in at.dataframe if len(df.value.columns) >= len(start)
                and all(str(c).startswith(s) for c, s in zip(df.value.columns, start, strict=False)))


def table(at: AppTest) -> pd.DataFrame:
    return frame(at, "exp-table")


def test_table_lists_every_experiment_with_its_numbers_and_filters(monkeypatch, tmp_path, ids, outputs):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    shown = table(at)
    assert list(shown["id"]) == ids[::-1]  # newest first
    assert list(shown["params"]) == [out.pruned["params"] for out in outputs[::-1]]
    assert list(shown["method"]) == list(METHODS[::-1]) and set(shown["status"]) == {"done"}
    assert list(shown["accuracy"]) == pytest.approx([out.pruned["accuracy"] for out in outputs[::-1]])
    assert list(shown.columns) == ["id", "method", "criterion", "status", "params", "FLOPs", "size (bytes)",
                                   "latency b1 (ms)", "accuracy", "created"]
    at.selectbox(key="exp-method").set_value("unstructured").run()
    assert list(table(at)["id"]) == [ids[2]]
    at.selectbox(key="exp-method").set_value("all").run()
    at.text_input(key="exp-search").set_value(ids[1][-6:].upper()).run()  # case-insensitive part of an id
    assert ids[1] in list(table(at)["id"])
    at.text_input(key="exp-search").set_value("").run()
    at.selectbox(key="exp-status").set_value("failed").run()
    assert table(at).empty
    assert not at.exception and not at.error


def test_folder_runs_and_killed_runs_are_listed_with_their_status(monkeypatch, tmp_path, outputs):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    written = runs.new_run_dir(MODEL, "channel")  # a complete folder the store never saw
    outputs[0].write(written)
    half = runs.new_run_dir(MODEL, "channel")  # a run killed before metrics.json
    outputs[1].config.save(half / "config.json")
    killed = Store().start(runs.new_run_dir(MODEL, "unstructured"), outputs[2].config)
    dead = next(p for p in range(4_000_000, 4_100_000) if not Path(f"/proc/{p}").exists())
    conn = sqlite3.connect(tmp_path / "experiments.db")
    with conn:  # its process is gone
        conn.execute("UPDATE experiments SET pid = ?, proc_start = NULL WHERE id = ?", (dead, killed))
    conn.close()
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    status = dict(zip(table(at)["id"], table(at)["status"], strict=True))
    assert status == {written.name: "done", half.name: "interrupted", killed: "interrupted"}


def test_diff_shows_the_changed_units_and_numbers_side_by_side(monkeypatch, tmp_path, ids, outputs):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-a").set_value(ids[0]).run()
    at.selectbox(key="exp-b").set_value(ids[1]).run()
    diff = frame(at, "exp-diff")
    assert list(diff["name"]) == ["fc1", "fc2"] and diff["changed"].all()
    assert list(diff[f"A: {ids[0]}"]) == ["0.25", "0"] and list(diff[f"B: {ids[1]}"]) == ["0.5", "0.5"]
    numbers = frame(at, "exp-numbers").set_index("metric")
    assert numbers.loc["params", f"B: {ids[1]}"] == f"{outputs[1].pruned['params']:,}"
    at.toggle(key="exp-changed-only").set_value(False).run()  # every row, the changed ones highlighted
    everything = frame(at, "exp-diff")
    assert len(everything) > 2 and "seed" in set(everything["name"]) and everything["changed"].sum() == 2
    at.selectbox(key="exp-b").set_value(ids[2]).run()
    assert "method" in set(frame(at, "exp-diff")["name"])
    assert not at.exception and not at.error


def _pareto(at: AppTest) -> dict:
    return next(s for s in chart_specs(at) if any(t.get("name") == "Pareto front" for t in s["data"]))


@pytest.mark.parametrize("axis", ["flops", "size_bytes", "latency_ms"])
def test_pareto_chart_highlights_the_stores_front(monkeypatch, tmp_path, ids, axis):
    no_accuracy = dataclasses.replace(Store().get(ids[0]).config, seed=7)
    Store().finish(Store().start(runs.new_run_dir(MODEL, "channel"), no_accuracy),
                   {"pruned": {"params": 1, "flops": 1, "size_bytes": 1, "latency_ms": 0.001, "accuracy": None}})
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-pareto-x").set_value(axis).run()
    traces = {t["name"]: t for t in _pareto(at)["data"]}
    front = Store().pareto(MODEL, axis)
    assert [c[0] for c in traces["Pareto front"]["customdata"]] == [e.id for e in front]
    assert traces["Pareto front"]["x"] == [getattr(e, axis) for e in front]
    assert traces["Pareto front"]["mode"] == "lines+markers"
    assert {c[0] for c in traces["dominated"]["customdata"]} == set(ids) - {e.id for e in front}
    assert any("1 finished experiment(s) left out: no test accuracy" in c.value for c in at.caption)
    assert "%{customdata[0]}" in traces["Pareto front"]["hovertemplate"]  # hover: id, then method


def test_delete_needs_confirmation_and_removes_record_and_folder(monkeypatch, tmp_path, ids):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-selected").set_value(ids[1]).run()
    assert at.button(key="exp-delete").disabled
    at.checkbox(key=f"exp-delete-confirm|{ids[1]}").check().run()
    at.button(key="exp-delete").click().run()
    assert list(table(at)["id"]) == [ids[2], ids[0]]
    assert not (tmp_path / "runs" / ids[1]).exists() and [e.id for e in Store().list()] == [ids[2], ids[0]]
    assert any(f"Deleted {ids[1]}" in s.value for s in at.success)
    assert at.selectbox(key="exp-selected").value != ids[1] and not at.exception


def test_delete_outside_the_workspace_shows_the_stores_refusal(monkeypatch, tmp_path, ids, outputs):
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    with runs.record(outside, outputs[0].config) as finish:
        outputs[0].write(outside)
        finish(json.loads(outputs[0].metrics_json()))
    exp_id = Store().id_for_folder(outside)
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-selected").set_value(exp_id).run()
    at.toggle(key="exp-downloads").set_value(True).run()
    assert any("outside" in i.value for i in at.info)  # no downloads from a folder PruneLab does not keep
    at.checkbox(key=f"exp-delete-confirm|{exp_id}").check().run()
    at.button(key="exp-delete").click().run()
    assert [e.value for e in at.error] == [f"{outside} is outside {(tmp_path / 'runs').resolve()}: PruneLab only "
                                           "deletes or exports run folders it keeps there (delete --keep-files "
                                           "forgets the record and leaves the files)"]
    assert outside.is_dir() and exp_id in list(table(at)["id"])


@pytest.fixture
def downloads(monkeypatch) -> dict[str, list[bytes]]:
    """The bytes handed to download buttons, by file name (MediaFileManager.add is what serves them)."""
    seen: dict[str, list[bytes]] = {}
    real = MediaFileManager.add

    def spy(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        seen.setdefault(file_name, []).append(data)
        return real(self, data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", spy)
    return seen


def test_reexport_offers_the_run_files(monkeypatch, tmp_path, ids, downloads):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-selected").set_value(ids[0]).run()
    assert not [d for d in at.get("download_button") if d.key.startswith("exp-dl-")]  # files read once asked for
    at.toggle(key="exp-downloads").set_value(True).run()
    assert [d.key for d in at.get("download_button") if d.key.startswith("exp-dl-")] == [
        "exp-dl-config.json", "exp-dl-model.onnx", "exp-dl-model.safetensors", "exp-dl-metrics.json"]
    assert goto(at, "export").selectbox(key="export-run").value == ids[2]  # Export hands out another run's files
    for name in ("config.json", "model.onnx", "model.safetensors", "metrics.json"):
        assert (tmp_path / "runs" / ids[0] / name).read_bytes() in downloads[name]


def test_a_run_without_onnx_says_why_and_offers_the_rest(monkeypatch, tmp_path, outputs):
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    failed = dataclasses.replace(outputs[0], onnx=b"", pruned={**outputs[0].pruned, "onnx_error": "exporter broke"})
    exp_id = record(failed)
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    assert at.selectbox(key="exp-selected").value == exp_id
    at.toggle(key="exp-downloads").set_value(True).run()
    assert [d.label for d in at.get("download_button") if d.key.startswith("exp-dl-")] == [
        "config.json", "model.safetensors", "metrics.json"]  # the weights still take the model out
    assert any("No model.onnx for this run: exporter broke" in w.value for w in at.warning)
    assert not at.exception and not at.error


def test_load_into_tune_sets_method_and_sliders(monkeypatch, tmp_path, ids):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.selectbox(key="exp-selected").set_value(ids[2]).run()
    at.button(key="exp-load").click().run()
    assert any(f"Loaded experiment {ids[2]} into Tune" in s.value for s in at.success)
    goto(at, "tune")
    assert at.session_state["method"] == "unstructured"
    for unit in ("fc1", "fc2", "fc3"):
        assert at.session_state[slider_key(MODEL, "unstructured", unit)] == 0.8
        assert at.slider(key=slider_key(MODEL, "unstructured", unit)).value == 0.8  # drawn on Tune
    assert at.radio(key="method").value == "unstructured"
    goto(at, "experiments").selectbox(key="exp-selected").set_value(ids[0]).run()
    at.button(key="exp-load").click().run()
    goto(at, "tune")
    assert at.radio(key="method").value == "channel"
    assert [at.slider(key=slider_key(MODEL, "channel", u)).value for u in ("fc1", "fc2")] == [0.25, 0.0]
    assert not at.exception and not at.error


def _config(**changes) -> dict:
    spec = get_spec(MODEL)
    data = PruneConfig(MODEL, "channel", {"fc1": 0.3, "fc2": 0.6}, model_fingerprint=spec.fingerprint).to_dict()
    return data | changes


def _upload(at: AppTest, text: str, name: str = "config.json") -> AppTest:
    return at.file_uploader(key="exp-import").set_value((name, text.encode(), "application/json")).run()


def _tune_state(at: AppTest) -> dict:
    return {k: v for k, v in at.session_state.to_dict().items()
            if k.startswith(("ratio", "drop|", "nm-", "block-")) or k in ("method", "criterion", "hw-aware")}


def test_uploaded_config_is_loaded_into_tune(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")  # no experiments: the import still works
    _upload(at, json.dumps(_config(method="unstructured", ratios={"fc2": 0.97}, criterion="l2")))
    assert any("capped at 0.95" in s.value and "fc2" in s.value for s in at.success)
    goto(at, "tune")
    assert at.radio(key="method").value == "unstructured" and at.session_state["criterion"] == "l2"
    assert at.session_state[slider_key(MODEL, "unstructured", "fc2")] == 0.95  # the sliders' maximum
    assert at.session_state[slider_key(MODEL, "unstructured", "fc1")] == 0.0
    assert not at.exception and not at.error


def _bad_cases() -> dict[str, tuple[str, str]]:
    """Uploads the import must refuse: (file text, the engine's message it shows)."""
    return {
        "unknown version": (json.dumps(_config(version=99)), "config version 99 is not supported"),
        "truncated JSON": (json.dumps(_config())[:60], "config is not valid JSON"),
        "another model": (json.dumps(_config(model="mnist-resnet")),
                          "config is for model 'mnist-resnet', not 'digits-mlp'"),
        "other weights": (json.dumps(_config(model_fingerprint="0123456789abcdef")),
                          "config was made for other weights of digits-mlp (fingerprint 0123456789abcdef"),
        "unknown layers": (json.dumps(_config(ratios={"fc1": 0.2, "conv9": 0.5, "head": 0.1})),
                           "digits-mlp has no channel layer(s) named conv9, head (it has: fc1, fc2)"),
        "ratio 1.5": (json.dumps(_config(ratios={"fc1": 1.5})),
                      "ratio for 'fc1' must be at least 0 and below 1, got 1.5"),
        "ratio NaN": (json.dumps(_config(ratios={"fc1": float("nan")})),
                      "ratio for 'fc1' must be at least 0 and below 1, got nan"),
        "not a config": ('["a", "list"]', "a config must be a JSON object"),
        "not text": ("\udcff", "is not UTF-8 text"),
        "deeply nested": ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
        "5,000 digits": ('{"version": 2, "seed": ' + "9" * 5000 + "}", "config cannot be read: Exceeds the limit"),
        "temperature 1e-300": (json.dumps(_config(finetune={"temperature": 1e-300})),
                               "distillation temperature must be a number from 0.1 to 100"),
        "seed 2**200": (json.dumps(_config(seed=2**200)), "seed must be an integer from 0 to 4294967295"),
    }


def test_a_config_with_a_byte_order_mark_loads_as_in_the_cli(monkeypatch, tmp_path):
    """The CLI and the dashboard read config bytes with one function: a BOM is skipped by both."""
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.file_uploader(key="exp-import").set_value(
        ("bom.json", b"\xef\xbb\xbf" + json.dumps(_config()).encode(), "application/json")).run()
    assert not at.error and at.session_state[slider_key(MODEL, "channel", "fc2")] == 0.6


def test_bad_config_uploads_show_one_error_and_change_nothing(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    _upload(at, json.dumps(_config()), "good.json")  # a known state to keep
    assert at.session_state[slider_key(MODEL, "channel", "fc2")] == 0.6
    before = _tune_state(at)
    bad = _bad_cases()
    assert "NaN" in bad["ratio NaN"][0]  # json writes the bare NaN token that JSON itself does not allow
    for case, (text, message) in bad.items():
        data = text.encode("utf-8", "surrogateescape")
        at.file_uploader(key="exp-import").set_value((f"{case}.json", data, "application/json")).run()
        errors = [e.value for e in at.error]
        shown = md(f"Cannot load {case}.json: ")  # the file name is shown as text (Markdown-escaped)
        assert len(errors) == 1 and md(message) in errors[0] and errors[0].startswith(shown), case
        assert _tune_state(at) == before, case
        assert not at.exception, case


def test_layer_config_ticks_the_block_checkboxes(monkeypatch, tmp_path):
    at = open_app(monkeypatch, "mnist-resnet", tmp_path, "experiments")
    spec = get_spec("mnist-resnet")
    config = PruneConfig("mnist-resnet", "layer", {}, model_fingerprint=spec.fingerprint,
                         remove_blocks=("layer3.1", "layer1.0"))
    _upload(at, config.to_json())
    goto(at, "tune")
    assert at.radio(key="method").value == "layer"
    ticked = {b: at.checkbox(key=f"drop|mnist-resnet|{b}").value for b in ("layer1.0", "layer1.1", "layer2.1",
                                                                        "layer3.1")}
    assert ticked == {"layer1.0": True, "layer1.1": False, "layer2.1": False, "layer3.1": True}
    _upload(goto(at, "experiments"), PruneConfig("mnist-resnet", "layer", {}, remove_blocks=("layer9.9",)).to_json(),
            "bad.json")
    assert [e.value for e in at.error] == ["Cannot load bad.json: mnist-resnet has no layer layer(s) named layer9.9 "
                                           "(it has: layer1.0, layer1.1, layer2.1, layer3.1)"]
    assert goto(at, "tune").checkbox(key="drop|mnist-resnet|layer3.1").value is True  # unchanged
    assert not at.exception


def test_a_dashboard_run_is_recorded_in_the_store_while_it_runs_and_when_done(monkeypatch, tmp_path):
    """Tune's Apply records the run as running first, then done with its metrics: a restart (a new Store
    object, as a new server process would open) finds it."""
    from core.store import Store
    from tests.dashboard.test_app import open_app, wait_for_job

    at = open_app(monkeypatch, "digits-mlp", tmp_path, "tune")
    at.slider(key="ratio-all|digits-mlp|channel").set_value(0.5).run()
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    (exp,) = Store().list(model="digits-mlp")
    assert exp.status == "done" and exp.config.method == "channel" and exp.metrics["pruned"]["params"] < 17226
    assert exp.folder is not None and (exp.folder / "metrics.json").exists()

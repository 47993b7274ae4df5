"""One run, one record, one listing: the experiment store lists runs and every surface reads the record it returns
(the CLI's `experiments show`, the Results and Export pages). A run folder is only its run's files: one copied
into the workspace without a record is no run until the store's own repair (Store.sync, which imports folders it
has not seen) records it."""

from __future__ import annotations

import json
import shutil

from core.cli import main
from core.store import Store
from core.store_rows import Experiment
from core.workspace import workspace
from dashboard.views import export, results
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app
from tests.dashboard.test_bad_runs import _prune


def _json(record: Experiment) -> dict:
    """A record as `prunelab experiments show --json` prints it."""
    return json.loads(json.dumps(record.to_dict()))


def _listed(at) -> list[str]:
    """The run ids the Results page offers (its options are labelled "<id> · <epochs> ep · acc ...")."""
    return [label.split(" · ")[0] for label in at.selectbox(key="results-run").options]


def test_cli_show_and_the_results_and_export_pages_read_the_same_record(tmp_path, monkeypatch, capsys):
    _prune(tmp_path, monkeypatch, {"fc1": 0.5}, "mine")
    capsys.readouterr()
    assert main(["experiments", "show", "mine", "--json"]) == 0
    shown_by_cli = json.loads(capsys.readouterr().out)

    picked = []  # what the pages picked to draw

    def spy(name: str, key: str):
        picked.append(pick(name, key))
        return picked[-1]

    pick = results.pick_run
    monkeypatch.setattr(results, "pick_run", spy)
    monkeypatch.setattr(export, "pick_run", spy)  # export imported it by name (maybe before this test)
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    goto(at, "export")
    assert not at.exception, [e.value for e in at.exception]
    assert len(picked) == 2
    for record in picked:
        assert type(record) is Experiment and record == Store().get("mine")
        assert _json(record) == shown_by_cli


def test_a_copied_run_folder_is_no_run_until_the_store_records_it(tmp_path, monkeypatch):
    _prune(tmp_path, monkeypatch, {"fc1": 0.5}, "mine")
    shutil.copytree(workspace() / "runs" / "mine", workspace() / "runs" / "copied")
    at = open_app(monkeypatch, "digits-mlp", tmp_path, "results")
    assert _listed(at) == ["mine"]  # the folder alone is not listed
    assert Store().sync()["imported"] == ["copied"]  # the store's repair records it, as a copy of its own
    goto(at, "results")
    assert sorted(_listed(at)) == ["copied", "mine"]
    assert Store().get("copied").metrics == Store().get("mine").metrics


def test_a_run_recorded_outside_the_run_folders_is_listed_without_handing_out_its_files(tmp_path, monkeypatch):
    """`prunelab prune --out DIR` records its run like any other, so Results lists it; but the pages hand out
    and show files only from <workspace>/runs (as Experiments and `experiments export` do)."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    (tmp_path / "ratios.json").write_text(json.dumps({"fc1": 0.5}))
    out = tmp_path / "elsewhere"
    assert main(["prune", "digits-mlp", "--method", "channel", "--config", str(tmp_path / "ratios.json"),
                 "--latency-batches", "1", "--out", str(out)]) == 0
    (record,) = Store().list(model="digits-mlp")
    assert record.folder == out.resolve() and (out / "model.onnx").is_file()
    at = open_app(monkeypatch, "digits-mlp", tmp_path / "home", "results")
    assert _listed(at) == [record.id]
    assert record.file("model.onnx") is None and record.file("metrics.json") is None
    assert any("No exported graph here" in i.value for i in at.info)
    labels = [d.label for d in goto(at, "export").get("download_button")]
    assert labels == ["config.json", "metrics.json"]
    assert any("No model.onnx" in w.value for w in at.warning)

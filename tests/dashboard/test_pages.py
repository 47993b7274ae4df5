"""The dashboard's pages (issue 12): each page is its own script at its own URL, only the shown page runs on a
rerun (a slider move on Tune draws nothing of the other five), the selected model and run carry across pages and
survive a reload through the URL, and the Model page says where to go next."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.views import experiments, export, model, results, search, sensitivity, tune
from tests.dashboard.nav import APP, PAGES, goto
from tests.dashboard.test_experiments import ids, outputs  # noqa: F401 (fixtures: three recorded runs)

VIEWS = dict(zip(PAGES, (model, sensitivity, tune, results, export, experiments, search), strict=True))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts each view's render calls (the real render still draws)."""
    counted: Counter = Counter()
    for page, view in VIEWS.items():
        def counting(name: str, _page: str = page, _render=view.render) -> None:
            counted[_page] += 1
            _render(name)
        monkeypatch.setattr(view, "render", counting)
    return counted


def open_app(monkeypatch: pytest.MonkeyPatch, home: Path, model_name: str = "digits-mlp",
             url: dict | None = None) -> AppTest:
    monkeypatch.setenv("PRUNELAB_MODEL", model_name)
    monkeypatch.setenv("PRUNELAB_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(url or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_slider_move_on_tune_runs_only_tune(monkeypatch, tmp_path, calls):
    at = goto(open_app(monkeypatch, tmp_path), "tune")
    calls.clear()
    at.slider(key="ratio|digits-mlp|channel|fc1").set_value(0.5).run()
    assert not at.exception
    assert calls == Counter({"tune": 1})  # Model, Sensitivity, Results, Export, Experiments did not run
    assert not [h for h in at.markdown if "Importance: which channels" in h.value]  # nothing of the Model page


def test_each_page_runs_alone_at_its_own_url(monkeypatch, tmp_path, calls):
    at = open_app(monkeypatch, tmp_path)
    assert calls == Counter({"model": 1})  # the default page
    for page in PAGES:
        calls.clear()
        goto(at, page)
        assert not at.exception, (page, [e.value for e in at.exception])
        assert calls == Counter({page: 1}), page


def test_model_page_says_what_to_do_next(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path)
    assert [link.proto.page for link in at.get("page_link")] == ["sensitivity", "tune"]  # their URL paths
    assert any("**Next:**" in m.value for m in at.markdown)
    no_data = open_app(monkeypatch, tmp_path, "resnet18")  # a zoo model: random weights, no data set
    assert [link.proto.page for link in no_data.get("page_link")] == ["tune"]


def test_model_carries_across_pages_and_into_the_url(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path, "mnist-resnet")
    at.sidebar.selectbox(key="model").set_value("digits-mlp").run()
    assert at.query_params["model"] == "digits-mlp"
    goto(at, "tune")
    assert at.sidebar.selectbox(key="model").value == "digits-mlp"
    assert at.slider(key="ratio|digits-mlp|channel|fc1")  # Tune draws the chosen model
    reloaded = open_app(monkeypatch, tmp_path, "mnist-resnet", url={"model": "digits-mlp"})  # a reload: new session
    assert reloaded.sidebar.selectbox(key="model").value == "digits-mlp"


@pytest.mark.usefixtures("ids")
def test_selected_run_carries_across_pages_and_survives_a_reload(monkeypatch, tmp_path):
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())  # three recorded runs, oldest first
    at = goto(open_app(monkeypatch, tmp_path), "results")
    assert at.selectbox(key="results-run").value == runs[-1]  # newest first
    at.selectbox(key="results-run").set_value(runs[0]).run()
    assert at.query_params["run"] == runs[0]
    goto(at, "export")
    assert at.selectbox(key="export-run").value == runs[0]  # Export shows the run chosen on Results
    reloaded = goto(open_app(monkeypatch, tmp_path, url={"model": "digits-mlp", "run": runs[0]}), "results")
    assert reloaded.selectbox(key="results-run").value == runs[0]  # not the newest: the one the URL names


def test_settings_outlive_their_page(monkeypatch, tmp_path):
    """Widget values another page reads (the sweep settings Tune's prediction uses) or that the user expects
    back (Tune's method and epochs) survive runs of other pages; a page draws its widgets only when shown."""
    at = goto(open_app(monkeypatch, tmp_path), "sensitivity")
    at.number_input(key="sens-eval").set_value(200).run()
    goto(at, "tune")
    at.radio(key="method").set_value("unstructured").run()
    at.number_input(key="epochs").set_value(3).run()
    assert at.session_state["sens-eval"] == 200  # two Tune runs later
    goto(at, "results").run()
    goto(at, "tune")
    assert at.radio(key="method").value == "unstructured" and at.number_input(key="epochs").value == 3
    assert goto(at, "sensitivity").number_input(key="sens-eval").value == 200

"""Recipes in the dashboard (issue 14, point 4): the Tune page builds an ordered list of stages from its own
settings, edits it (move, remove, clear), and runs it as ONE PruneConfig (the first stage and its `then`); a
config with stages loads into that list; Results lists every stage's measurements along the way and marks the
stages on its trajectory chart; Experiments names every stage's method; Export hands out the stages."""

from __future__ import annotations

import json

import pytest

from core.config import PruneConfig
from core.metric_keys import PERPLEXITY_METRIC, TEST_ACCURACY
from core.store import Store
from dashboard import state
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import chart_specs, open_app, wait_for_job

MODEL = "digits-mlp"


def _set_stage(at, method: str, ratio: float) -> None:
    """Tune's method and every unit's ratio (its "All layers" slider), no fine-tuning: the settings to add."""
    at.radio(key=state.METHOD).set_value(method).run()
    at.slider(key=state.all_key(MODEL, method)).set_value(ratio).run()
    at.number_input(key=state.EPOCHS).set_value(0).run()


def _add(at, method: str, ratio: float) -> None:
    _set_stage(at, method, ratio)
    at.button(key=state.STAGE_ADD).click().run()


def _stage_table(at) -> list[dict]:
    """The Tune page's recipe table, as rows."""
    frame = next(d.value for d in at.dataframe if "stage" in d.value.columns and "cuts" in d.value.columns)
    return frame.to_dict("records")


def _errors(at) -> list[str]:
    return [e.value for e in (*at.exception, *at.error)]


@pytest.mark.slow  # AppTest: two stages added, one digits-mlp recipe run without fine-tuning, four pages: ~40 s
def test_a_recipe_built_on_tune_runs_as_one_config_and_every_page_shows_its_stages(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _add(at, "neuron", 0.3)
    _add(at, "unstructured", 0.5)
    assert not _errors(at), _errors(at)
    rows = _stage_table(at)
    assert [(r["stage"], r["method"], r["fine-tune epochs"], r["repair"]) for r in rows] == [
        (1, "neuron", 0, "none"), (2, "unstructured", 0, "none")]
    assert "30%" in rows[0]["cuts"] and "50%" in rows[1]["cuts"]

    at.button(key=state.APPLY).click().run()
    wait_for_job(at)
    assert not _errors(at), _errors(at)
    run = Store().list(model=MODEL, status="done")[0]
    assert run.config.method == "neuron" and set(run.config.ratios) == {"fc1", "fc2"}
    assert [s.method for s in run.config.then] == ["unstructured"]
    assert run.config.then[0].ratios == {"fc1": 0.5, "fc2": 0.5, "fc3": 0.5}
    assert run.config.model_fingerprint == get_spec(MODEL).fingerprint and not run.config.then[0].model_fingerprint

    goto(at, "results")
    assert not _errors(at), _errors(at)
    frame = next(d.value for d in at.dataframe if "non-zero params" in d.value.columns)
    assert sorted(set(frame["stage"])) == [1, 2]
    assert list(frame["method"].unique()) == ["neuron", "unstructured"]
    assert frame.iloc[-1]["non-zero params"] == run.metrics["pruned"]["nonzero_params"]
    assert frame.iloc[-1]["params"] == run.metrics["pruned"]["params"]
    chart = next(s for s in chart_specs(at) if "stage 2" in json.dumps(s.get("layout", {})))
    assert "unstructured" in json.dumps(chart["layout"])  # each stage's band names its method

    goto(at, "experiments")
    table = next(d.value for d in at.dataframe if "id" in d.value.columns and "method" in d.value.columns)
    assert table.iloc[0]["method"] == "neuron → unstructured"

    goto(at, "export")
    exported = at.json[0].value
    exported = json.loads(exported) if isinstance(exported, str) else exported
    assert [s["method"] for s in exported["then"]] == ["unstructured"]


def test_a_config_with_stages_loads_into_the_stage_list(monkeypatch, tmp_path):
    spec = get_spec(MODEL)
    recipe = PruneConfig(MODEL, "neuron", {"fc1": 0.3}, model_fingerprint=spec.fingerprint, then=[
        {"method": "unstructured", "ratios": {"fc2": 0.5, "fc3": 0.4}, "repair": "sparsegpt"}])
    at = open_app(monkeypatch, MODEL, tmp_path, "experiments")
    at.file_uploader(key=state.EXP_IMPORT).set_value(("recipe.json", recipe.to_json().encode(),
                                                      "application/json")).run()
    assert not _errors(at), _errors(at)
    assert any("recipe of 2 stages loaded" in s.value for s in at.success), [s.value for s in at.success]
    goto(at, "tune")
    assert not _errors(at), _errors(at)
    rows = _stage_table(at)
    assert [(r["stage"], r["method"], r["repair"]) for r in rows] == [(1, "neuron", "none"),
                                                                     (2, "unstructured", "sparsegpt")]
    assert at.radio(key=state.METHOD).value == "neuron"  # the first stage is in the controls too


def test_a_stage_that_cannot_follow_is_refused_in_one_line_and_the_list_kept(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _add(at, "unstructured", 0.5)
    _add(at, "neuron", 0.3)  # a structural cut after masks: core refuses the recipe
    refused = [e.value for e in at.error]
    assert any("follows a mask stage" in e and "\n" not in e for e in refused), refused
    assert [r["method"] for r in _stage_table(at)] == ["unstructured"]


def test_moving_removing_and_clearing_stages(monkeypatch, tmp_path):
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    _add(at, "neuron", 0.3)
    _add(at, "unstructured", 0.5)
    at.selectbox(key=state.STAGE_PICK).set_value(2).run()
    at.button(key=state.STAGE_UP).click().run()  # unstructured first: an order core refuses
    assert [r["method"] for r in _stage_table(at)] == ["unstructured", "neuron"]  # nothing lost
    assert any("follows a mask stage" in e.value for e in at.error)
    assert at.button(key=state.APPLY).disabled
    at.button(key=state.STAGE_DOWN).click().run()  # the picked stage (now 1) back down
    assert [r["method"] for r in _stage_table(at)] == ["neuron", "unstructured"]
    assert not at.error and not at.button(key=state.APPLY).disabled
    at.selectbox(key=state.STAGE_PICK).set_value(1).run()
    at.button(key=state.STAGE_REMOVE).click().run()
    assert [r["method"] for r in _stage_table(at)] == ["unstructured"]
    at.button(key=state.STAGE_CLEAR).click().run()
    assert not any("cuts" in d.value.columns for d in at.dataframe)


def _point(stage: int, phase: str, step: int, nonzero: int, **task: float) -> dict:
    return {"stage": stage, "phase": phase, "step": step, "fraction": 1.0, "params": 1000 - 100 * stage,
            "nonzero_params": nonzero, "flops": 2000 - 200 * stage, **task}


def test_the_stage_table_takes_each_stages_last_pruned_and_fine_tuned_points():
    from dashboard.components import stage_results  # the Results part of recipes

    config = PruneConfig(MODEL, "neuron", {"fc1": 0.3}, then=[{"method": "unstructured", "ratios": {"fc2": 0.5}}])
    points = [_point(1, "baseline", 0, 1000, accuracy=0.9), _point(1, "pruned", 1, 800, accuracy=0.5),
              _point(1, "fine-tuned", 1, 800, accuracy=0.85), _point(2, "pruned", 2, 500, accuracy=0.6),
              _point(2, "fine-tuned", 2, 500, accuracy=0.8)]
    frame = stage_results.stage_table(points, config, TEST_ACCURACY)
    assert frame[["stage", "method", "after"]].values.tolist() == [
        [1, "neuron", "pruning"], [1, "neuron", "fine-tuning"],
        [2, "unstructured", "pruning"], [2, "unstructured", "fine-tuning"]]
    assert frame["non-zero params"].tolist() == [800, 800, 500, 500]
    assert frame["test accuracy"].tolist() == [0.5, 0.85, 0.6, 0.8]
    lm = [{**p, "perplexity": 5.0 + p["step"]} for p in points]
    assert stage_results.stage_table(lm, config, PERPLEXITY_METRIC)["validation perplexity"].tolist() == [
        6.0, 6.0, 7.0, 7.0]


def test_a_stage_naming_layers_of_a_block_removed_before_is_flagged():
    from dashboard.components.stages import inside_removed

    ratios = {"blocks.3.fc1": 0.3, "blocks.30.fc1": 0.3, "blocks.2.fc1": 0.3}
    stages = PruneConfig("mnist-vit", "layer", {}, remove_blocks=("blocks.3",),
                         then=[{"method": "unstructured", "ratios": ratios}]).stages()
    assert inside_removed(stages) == ["stage 2: blocks.3.fc1"]
    assert inside_removed(stages[:1]) == []

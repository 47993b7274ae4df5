"""Hugging Face models in the dashboard (issue 13, point 4): the Tune page's "HF-compatible" toggle offers only
the cuts a Hugging Face config can describe (the layer stack's own units, every layer alike) and its "Check HF
export" button says whether the current config exports as a Hugging Face folder; the Export page hands out a
run of an HF model as a zipped folder that transformers' own `from_pretrained` loads, equal to the run's pruned
model."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import PruneConfig
from core.export_formats import load_pruned
from dashboard import cache
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app, wait_for_job
from tests.dashboard.test_own_model import choose_own, load

transformers = pytest.importorskip("transformers")

FFN = "model.bert.encoder.layer.{}.intermediate.dense"  # BERT's feed-forward units (neuron method), per layer
POOLER = "model.bert.pooler.dense"  # a neuron unit outside the layer stack: no config field holds its width


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small HF BERT saved as a folder (hf_zoo, random weights) and its token data as .npz."""
    from sample_models.hf_zoo import build

    spec = build("bert")
    folder = tmp_path_factory.mktemp("hf-bert")
    transformers.logging.disable_progress_bar()
    try:
        spec.model.model.save_pretrained(folder / "bert")
    finally:
        transformers.logging.enable_progress_bar()
    split = spec.split
    np.savez(folder / "data.npz", x=split.test_x.numpy(), y=split.test_y.numpy(), x_train=split.train_x.numpy(),
             y_train=split.train_y.numpy())
    return folder / "bert", folder / "data.npz"


def _open_bert(monkeypatch, tmp_path, bert) -> tuple:
    """The app with the BERT folder loaded from the sidebar form, on the Tune page, neuron method; and its handle."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, data = bert
    at = load(choose_own(open_app(monkeypatch, "digits-mlp", tmp_path)), str(folder), str(data))
    assert not at.exception and not at.error, [e.value for e in at.error]
    handle = at.sidebar.selectbox(key="model").value
    goto(at, "tune").radio(key="method").set_value("neuron").run()
    assert not at.exception, [e.value for e in at.exception]
    return at, handle


def _ratio_sliders(at) -> list[str]:
    return [s.key for s in at.slider if s.key and s.key.startswith("ratio|")]


def _check(at) -> tuple[list[str], list[str]]:
    """Press "Check HF export"; (successes, errors) shown."""
    at.button(key="hf-check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return [s.value for s in at.success], [e.value for e in at.error]


@pytest.mark.slow  # 18 s measured (2 busy cores): the sidebar's check-load in a child process, the baseline
def test_hf_mode_offers_only_the_layer_stack_uniformly_and_checks_the_export(monkeypatch, tmp_path, bert):
    at, handle = _open_bert(monkeypatch, tmp_path, bert)
    key = f"ratio|{handle}|neuron|" + "{}"
    assert {key.format(FFN.format(0)), key.format(FFN.format(1)), key.format(POOLER)} <= set(_ratio_sliders(at))

    at.toggle(key=f"hf-compatible|{handle}").set_value(True).run()  # on: one slider for the layers' FFN width
    assert _ratio_sliders(at) == [key.format(FFN.format(0))]
    at.slider(key=key.format(FFN.format(0))).set_value(0.5).run()
    done, errors = _check(at)
    assert any("exports as a Hugging Face folder" in s for s in done) and not errors, (done, errors)

    at.toggle(key=f"hf-compatible|{handle}").set_value(False).run()  # off: every layer took the value
    assert at.slider(key=key.format(FFN.format(1))).value == pytest.approx(0.5)
    assert at.slider(key=key.format(POOLER)).value == 0.0
    at.slider(key=key.format(FFN.format(1))).set_value(0.25).run()  # layers now differ
    done, errors = _check(at)
    assert not done and any("feed-forward width differs between layers" in e for e in errors), (done, errors)


@pytest.mark.slow  # ~20 s: the check-load, the solver, and the check of its cut
def test_the_solver_in_hf_mode_fills_every_layer_alike(monkeypatch, tmp_path, bert):
    """The channel method (the solver's): the layers' FFN and the hidden size get one ratio, the pooler none; BERT's
    config cannot hold the narrower hidden size (heads of width hidden/heads), which the check says in one line."""
    at, handle = _open_bert(monkeypatch, tmp_path, bert)
    at.radio(key="method").set_value("channel").run()
    key = f"ratio|{handle}|channel|" + "{}"
    hidden = "model.bert.encoder.layer.0.attention.output.dense"  # the residual width, named by its first layer
    at.slider(key=key.format(POOLER)).set_value(0.3).run()
    at.toggle(key=f"hf-compatible|{handle}").set_value(True).run()
    assert sorted(_ratio_sliders(at)) == sorted([key.format(hidden), key.format(FFN.format(0))])
    at.number_input(key="solver-value").set_value(1.1).run()
    at.button(key="solve").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("uniform allocation: target met" in s.value for s in at.success)
    ratio = at.slider(key=key.format(FFN.format(0))).value
    assert ratio > 0 and at.slider(key=key.format(hidden)).value == pytest.approx(ratio)
    done, errors = _check(at)
    assert not any("exports" in s for s in done), done
    assert any("not a multiple of the number of attention heads" in e for e in errors), errors
    at.toggle(key=f"hf-compatible|{handle}").set_value(False).run()
    assert at.slider(key=key.format(FFN.format(1))).value == pytest.approx(ratio)
    assert at.slider(key=key.format(POOLER)).value == 0.0  # held outside the layer stack


def _apply(at) -> None:
    at.number_input(key="epochs").set_value(0).run()
    at.button(key="apply").click().run()
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]


@pytest.mark.slow  # 21 s measured: the check-load, a run of a tiny BERT, the export reloaded with from_pretrained
def test_export_page_hands_out_an_hf_folder_from_pretrained_loads(monkeypatch, tmp_path, bert):
    at, handle = _open_bert(monkeypatch, tmp_path, bert)
    at.toggle(key=f"hf-compatible|{handle}").set_value(True).run()
    at.slider(key=f"ratio|{handle}|neuron|{FFN.format(0)}").set_value(0.5).run()
    _apply(at)
    goto(at, "export")
    assert not at.exception, [e.value for e in at.exception]
    labels = [d.label for d in at.get("download_button")]
    assert {"Hugging Face folder (.zip)", "model.pt2"} <= set(labels), labels
    assert any("AutoModelForSequenceClassification.from_pretrained" in c.value for c in at.code)

    # what the button hands out (cache.run_hf_zip, called when it is clicked), unzipped and loaded by transformers
    run = next((tmp_path / "runs").iterdir())
    base = cache.load_spec(handle, at.session_state["user-models"][handle])  # the session's model (cached)
    data = cache.run_hf_zip(handle, str(run), (run / "config.json").stat().st_mtime_ns, base, str(bert[0]))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "model-hf"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
    assert reloaded.config.intermediate_size == 32
    pruned = load_pruned(base.model, PruneConfig.load(run / "config.json"), run / "model.safetensors",
                         base.example_input)
    x = base.split.test_x[:8]
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x).logits, pruned.eval()(x), atol=1e-5, rtol=1e-5)

    (run / "model.safetensors").unlink()  # as a run recorded before runs kept their weights
    at.run()
    assert "Hugging Face folder (.zip)" not in [d.label for d in at.get("download_button")]
    assert any(c.value.startswith("No Hugging Face folder: this run has no model.safetensors") for c in at.caption)


@pytest.mark.slow  # 20 s measured: the check-load and a run whose layers differ
def test_a_run_no_hf_config_describes_says_why_and_keeps_the_pt2(monkeypatch, tmp_path, bert):
    at, handle = _open_bert(monkeypatch, tmp_path, bert)
    at.slider(key=f"ratio|{handle}|neuron|{FFN.format(0)}").set_value(0.5).run()  # layer 1 keeps all: non-uniform
    _apply(at)
    goto(at, "export")
    assert not at.exception, [e.value for e in at.exception]
    labels = [d.label for d in at.get("download_button")]
    assert "model.pt2" in labels and "Hugging Face folder (.zip)" not in labels, labels
    shown = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert any("No Hugging Face folder" in s and "feed-forward width differs between layers" in s for s in shown), \
        shown

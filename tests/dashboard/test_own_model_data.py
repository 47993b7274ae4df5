"""The sidebar's own-model form with data as users keep it (issue 13, point 5): a Hugging Face folder with a CSV
whose text and label columns are chosen in the form; a wrong column is one error line in the form."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dashboard.components.format import human
from tests.core.test_user_data_formats import NAMES, _quiet_save, _rows, _tokenizer
from tests.dashboard.test_app import metric, open_app
from tests.dashboard.test_own_model import choose_own

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_and_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A tiny BERT folder with its tokenizer, a CSV with columns review and stars, and the model's parameters."""
    folder = tmp_path_factory.mktemp("own-data")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    model = transformers.BertForSequenceClassification(config)
    _quiet_save(model, folder / "bert")
    _tokenizer(folder / "bert")
    csv = folder / "reviews.csv"
    csv.write_text("review,stars\n" + "".join(f"{t},{NAMES[y]}\n" for t, y in _rows()))
    return folder / "bert", csv, sum(p.numel() for p in model.parameters())


def _fill(at, ref: Path, data: Path, text: str, label: str):
    at.sidebar.text_input(key="own-ref").input(str(ref))
    at.sidebar.text_input(key="own-data-path").input(str(data))
    at.sidebar.text_input(key="own-text-column").input(text)
    at.sidebar.text_input(key="own-label-column").input(label)
    return at.sidebar.button(key="own-load").click().run()


@pytest.mark.slow  # ~30 s: a check-load in a child process, then the baseline (ONNX export, timing)
def test_a_csv_with_chosen_columns_loads_a_hugging_face_folder(monkeypatch, tmp_path, bert_and_csv):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bert, csv, params = bert_and_csv
    at = _fill(choose_own(open_app(monkeypatch, "digits-mlp", tmp_path)), bert, csv, "review", "stars")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key="model").value.startswith("user-")
    assert metric(at, "Parameters") == human(params)
    assert any("text=review" in c.value and "label=stars" in c.value for c in at.sidebar.caption)


def test_a_missing_column_is_one_line_in_the_form(monkeypatch, tmp_path, bert_and_csv):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bert, csv, _ = bert_and_csv
    at = open_app(monkeypatch, "digits-mlp", tmp_path)
    params = metric(at, "Parameters")
    at = _fill(choose_own(at), bert, csv, "text", "stars")
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert any("reviews.csv has no column 'text' (its columns: review, stars)" in e for e in errors), errors
    assert metric(at, "Parameters") == params  # the pages still show digits-mlp

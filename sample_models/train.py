"""Retrain a sample model reproducibly: `python -m sample_models.train NAME [--seed S]`.

Writes sample_models/weights/NAME.pt (a state dict, loadable with weights_only=True; tiny-lm's in fp16) and
prints the test accuracy (and a language model's validation perplexity). Same seed, same machine, same thread
count: same weights.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tqdm import tqdm

from core.data import load_split
from core.evaluate import evaluate
from core.finetune import Recipe, fit
from sample_models import SAMPLES


def train(name: str, seed: int = 0) -> float:
    """Train sample NAME from scratch with its recipe, save its weights, return its test accuracy."""
    sample = SAMPLES[name]
    torch.manual_seed(seed)
    model = sample.build()
    split = load_split(sample.dataset)
    x, y = sample.training_data() if sample.training_data else (split.train_x, split.train_y)
    recipe = Recipe(epochs=sample.epochs, lr=sample.lr, optimizer="adamw", weight_decay=0.05, warmup_fraction=0.05,
                    augment=sample.dataset == "mnist", **dict(sample.recipe))
    start = time.monotonic()
    with tqdm(total=1, desc=f"training {name}", unit="step", file=sys.stderr) as bar:
        def progress(done: int, total: int, info: dict) -> None:
            bar.total = total
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}", refresh=False)
            bar.update(done - bar.n)
        fit(model, x, y, recipe, seed=seed, progress=progress)
    seconds = time.monotonic() - start
    sample.weights_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: stored(v, sample.weights_dtype) for k, v in model.state_dict().items()}, sample.weights_path)
    model.load_state_dict(torch.load(sample.weights_path, weights_only=True))  # measure what was committed
    metrics = evaluate(model, split.test_x, split.test_y)
    lm = f", validation perplexity {metrics['perplexity']:.3f}" if "perplexity" in metrics else ""
    print(f"{name}: test accuracy {metrics['accuracy']:.4f} (needs {sample.min_accuracy}){lm}; trained in "
          f"{seconds:.0f} s on {torch.get_num_threads()} threads -> {sample.weights_path}")
    return metrics["accuracy"]


def stored(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t as committed in dtype. A non-zero value too small for dtype (fp16 rounds |x| < 2**-25 to zero: tiny-lm's key
    biases, which cannot change its outputs, sit near 1e-6) becomes dtype's smallest value of its sign instead, so the
    file holds no zero that training did not make: pruning counts zeros, and fine-tuning would revive such a one."""
    if not t.is_floating_point():
        return t
    out = t.to(dtype)
    smallest = torch.nextafter(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype))
    return torch.where((out == 0) & (t != 0), smallest.copysign(t.to(dtype)), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(SAMPLES), metavar="NAME")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    failed = [n for n in args.names if train(n, args.seed) < SAMPLES[n].min_accuracy]
    if failed:
        print(f"below the required accuracy: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

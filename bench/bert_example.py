"""The source document's BERT example, scaled down: "BERT has 12 heads per layer … remove the rest", plus one
layer dropped. On the trained Hugging Face BERT of sample_models.third_party (Python documentation topics), half
of every layer's heads go (taylor: gate gradients), then the least influential layer, then one epoch of
fine-tuning with the recipe core.recipes chooses for the model. Target: within 2 points of the baseline.

Run: .venv/bin/python -m bench.bert_example   (writes the "bert-example" section of docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime

from bench.docs import write_section
from core import recipes
from core.attention import attention_views
from core.config import FinetuneConfig, PruneConfig
from core.evaluate import evaluate
from core.metrics import count_params
from core.plan import plan
from core.prune import apply
from core.schedule import train
from sample_models import third_party


def run(seed: int) -> dict:
    """Figures of one seed: baseline, after the cuts, after one epoch."""
    spec = third_party.load("hf-bert")
    x, y = spec.split.test_x, spec.split.test_y
    base = evaluate(spec.model, x, y)["accuracy"]
    heads, _ = plan(spec, "head", 0.5, criterion="taylor", seed=seed)
    cut = apply(spec, PruneConfig(model=spec.name, method="head", ratios=heads, criterion="taylor", seed=seed))
    half = dataclasses.replace(spec, model=cut.model)
    layers = len(attention_views(spec.model))
    _, blocks = plan(half, "layer", 1 / layers, seed=seed)
    finetune = recipes.choose(spec).fill(FinetuneConfig(epochs=1))
    config = PruneConfig(model=spec.name, method="layer", ratios={}, remove_blocks=blocks, finetune=finetune, seed=seed)
    trained = train(half, config)
    before = evaluate(apply(half, dataclasses.replace(config, finetune=FinetuneConfig())).model, x, y)["accuracy"]
    after = evaluate(trained.model, x, y)["accuracy"]
    views = attention_views(trained.model)
    return {"seed": seed, "baseline": base, "cut": before, "after": after, "layers": f"{layers} -> {len(views)}",
            "heads": f"{attention_views(spec.model)[next(iter(attention_views(spec.model)))].heads} -> "
                     f"{next(iter(views.values())).heads}",
            "params": f"{count_params(spec.model):,} -> {count_params(trained.model):,}",
            "recipe": recipes.describe(finetune), "removed": ", ".join(blocks)}


def table(rows: list[dict]) -> str:
    head = ("| seed | baseline | after the cuts | after 1 epoch | drop (points) | layers | heads per layer | "
            "params | fine-tune recipe |\n|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['seed']} | {r['baseline']:.4f} | {r['cut']:.4f} | {r['after']:.4f} | "
             f"{100 * (r['baseline'] - r['after']):.2f} | {r['layers']} | {r['heads']} | {r['params']} | "
             f"{r['recipe']} |" for r in rows]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"## BERT example (issue 13): half the heads and one layer, one epoch\n\n"
            f"Measured {when} with `python -m bench.bert_example --seeds {len(rows)}` on the trained HF BERT of "
            "sample_models.third_party (5 Python documentation topics; test split). Heads ranked by taylor (gate "
            "gradients), the layer by block influence; target: within 2 points of the baseline.\n\n"
            f"{head}\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = [run(seed) for seed in range(args.seeds)]
    text = table(rows)
    print(text)
    write_section("bert-example", text)


if __name__ == "__main__":
    main()

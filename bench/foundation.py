"""Benchmark of the foundation's claims; writes its section of docs/benchmarks.md.

    .venv/bin/python -m bench.foundation [--seeds 0 1 2]

Measures, through the same `prunelab` commands a user runs: each sample model's test accuracy; channel
pruning at 0.5 with one fine-tune epoch over several seeds (params, FLOPs, accuracy, ONNX latency);
unstructured pruning at 0.8; replay of the config; the default fine-tune recipe on the unpruned model;
BatchNorm re-estimation on vs off; and how long a slider's estimate takes.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.docs import write_section
from core import cli
from core.config import FinetuneConfig
from core.data import calibration_subset
from core.estimate import build_cost_model
from core.evaluate import evaluate
from core.finetune import Recipe, fit, recalibrate_batchnorm
from core.graph import channel_units
from core.models import available, load
from core.prune.channel import apply_channel


def prunelab(*argv: str) -> dict:
    """Run a prunelab command that writes --out DIR and return DIR's metrics.json."""
    code = cli.main(list(argv))
    assert code == 0, f"prunelab {' '.join(argv)} exited {code}"
    out = Path(argv[argv.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text())


def pct(a: float, b: float) -> str:
    return f"{a / b:.3f}"


def accuracies() -> list[str]:
    rows = ["| model | test accuracy | required |", "|---|---|---|"]
    from sample_models import SAMPLES

    for name in available(trained_only=True):
        spec = load(name)
        acc = evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]
        rows.append(f"| {name} | {acc:.4f} | {SAMPLES[name].min_accuracy} |")
    return rows


def channel_runs(tmp: Path, seeds: list[int]) -> tuple[list[str], list[float], Path]:
    rows = ["| seed | params / base | FLOPs / base | accuracy (base) | ORT b1 ms (base) | ORT b32 ms (base) |",
            "|---|---|---|---|---|---|"]
    accs = []
    for seed in seeds:
        out = tmp / f"channel-{seed}"
        m = prunelab("prune", "mnist-resnet", "--method", "channel", "--ratio", "0.5", "--finetune-epochs", "1",
                     "--seed", str(seed), "--out", str(out))
        b, p = m["baseline"], m["pruned"]
        accs.append(p["accuracy"])
        rows.append(f"| {seed} | {pct(p['params'], b['params'])} | {pct(p['flops'], b['flops'])} | "
                    f"{p['accuracy']:.4f} ({b['accuracy']:.4f}) | {p['latency_ms']:.4f} ({b['latency_ms']:.4f}) | "
                    f"{p['latency_ms_batch32']:.3f} ({b['latency_ms_batch32']:.3f}) |")
    return rows, accs, tmp / f"channel-{seeds[0]}"


def unstructured_run(tmp: Path) -> list[str]:
    m = prunelab("prune", "mnist-resnet", "--method", "unstructured", "--ratio", "0.8", "--finetune-epochs", "1",
                 "--out", str(tmp / "unstructured"))
    b, p = m["baseline"], m["pruned"]
    spec = load("mnist-resnet")
    layer_weights = sum(mod.weight.numel() for mod in spec.model.modules() if hasattr(mod, "weight")
                        and mod.__class__.__name__ in ("Conv2d", "Linear"))
    zeroed = sum(m["removed"].values())
    return [f"- pruned layers' non-zero weights: {layer_weights - zeroed:,} of {layer_weights:,} "
            f"= {(layer_weights - zeroed) / layer_weights:.3f}",
            f"- accuracy {p['accuracy']:.4f} vs baseline {b['accuracy']:.4f} "
            f"(drop {100 * (b['accuracy'] - p['accuracy']):.2f} points)",
            f"- dense ONNX file {p['onnx_bytes']:,} B vs {b['onnx_bytes']:,} B; ORT b32 {p['latency_ms_batch32']:.3f} "
            f"vs {b['latency_ms_batch32']:.3f} ms (masks do not make a dense model smaller or faster)"]


def replay(tmp: Path, first: Path) -> list[str]:
    m1 = json.loads((first / "metrics.json").read_text())["pruned"]
    m2 = prunelab("apply", str(first / "config.json"), "--out", str(tmp / "replay"))["pruned"]
    same = all(m1[k] == m2[k] for k in ("params", "flops", "accuracy"))
    return [f"- `prunelab apply` of seed {first.name}: params {m2['params']:,} vs {m1['params']:,}, FLOPs "
            f"{m2['flops']:,} vs {m1['flops']:,}, accuracy {m2['accuracy']:.4f} vs {m1['accuracy']:.4f} -> "
            f"{'identical' if same else 'DIFFERENT'}"]


def recipe_no_harm(seeds: list[int]) -> list[str]:
    spec = load("mnist-resnet")
    base = evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]
    lines = []
    for seed in seeds:  # the recipe `--finetune-epochs 1` uses (FinetuneConfig defaults)
        model = copy.deepcopy(spec.model)
        ft = FinetuneConfig(epochs=1)
        fit(model, spec.split.train_x, spec.split.train_y, Recipe(epochs=1, lr=ft.lr, batch_size=ft.batch_size),
            seed=seed)
        acc = evaluate(model, spec.split.test_x, spec.split.test_y)["accuracy"]
        lines.append(f"- seed {seed}: {acc:.4f} (baseline {base:.4f}, change {100 * (acc - base):+.2f} points)")
    return lines


def batchnorm_effect() -> list[str]:
    spec = load("mnist-resnet")
    lines = []
    for ratio in (0.2, 0.5):
        ratios = {u.name: ratio for u in channel_units(spec.model, spec.example_input)}
        model = copy.deepcopy(spec.model)
        apply_channel(model, ratios, spec.example_input)
        without = evaluate(model, spec.split.test_x, spec.split.test_y)["accuracy"]
        recalibrate_batchnorm(model, calibration_subset(spec.split.train_x, 512))
        with_bn = evaluate(model, spec.split.test_x, spec.split.test_y)["accuracy"]
        lines.append(f"- one-shot channel {ratio} on every group, no fine-tune: accuracy {without:.4f} without "
                     f"BatchNorm re-estimation, {with_bn:.4f} with it (512 training images)")
    return lines


def estimate_speed() -> list[str]:
    rows = ["| model | method | units | estimate per slider move (µs, median of 200) |", "|---|---|---|---|"]
    for name in available(trained_only=True):
        spec = load(name)
        for method in ("channel", "unstructured"):
            cm = build_cost_model(spec.model, spec.example_input, method)
            ratios = {u.name: 0.3 for u in cm.units}
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                cm.estimate(ratios)
                times.append((time.perf_counter() - t0) * 1e6)
            rows.append(f"| {name} | {method} | {len(cm.units)} | {statistics.median(times):.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ch_rows, accs, first = channel_runs(tmp, args.seeds)
        sections = [
            "## Foundation benchmark", "",
            f"Generated by `.venv/bin/python -m bench.foundation` on {time.strftime('%Y-%m-%d')}; "
            "onnxruntime CPU, 1 thread, median of repeated runs after warm-up. A shared 2-core machine: "
            "latency varies by a few percent between runs.", "",
            "### Sample models", "", *accuracies(), "",
            "### `prunelab prune mnist-resnet --method channel --ratio 0.5 --finetune-epochs 1 --seed S`", "",
            *ch_rows, "", f"Spread of accuracy across seeds: {100 * (max(accs) - min(accs)):.2f} points.", "",
            "### `prunelab prune mnist-resnet --method unstructured --ratio 0.8 --finetune-epochs 1`", "",
            *unstructured_run(tmp), "",
            "### Replay", "", *replay(tmp, first), "",
            "### Default fine-tune recipe on the unpruned mnist-resnet (1 epoch)", "", *recipe_no_harm(args.seeds), "",
            "### BatchNorm re-estimation after channel pruning", "", *batchnorm_effect(), "",
            "### Slider estimate cost (no pruning)", "", *estimate_speed(), "",
        ]
    text = "\n".join(sections)
    write_section("foundation", text)
    print(text)


if __name__ == "__main__":
    main()

"""Benchmark: realized speed-up of channel pruning on mnist-resnet at 2x, 3x and 4x fewer MACs —
PruneLab hardware-aware vs Torch-Pruning used directly (uniform ratio, and uniform with round_to=8);
writes its section of docs/benchmarks.md.

    .venv/bin/python -m bench.speedup

Every config of one batch size is timed in the same interleaved onnxruntime run as the baseline
(1 thread), so machine load hits them alike. PruneLab's configs come from `prunelab allocate
--hardware-aware` logic: the sensitivity strategy on the measured width-latency table, the alignment
chosen by timing whole models. Torch-Pruning's uniform ratio is found by bisection to the MAC target.
Accuracy is after one epoch of the default fine-tune (seed 0), on the test set.
"""

from __future__ import annotations

import copy
import time

import onnxruntime
import torch
import torch_pruning as tp

from bench.docs import write_section
from core.allocate import Target, allocate
from core.config import FinetuneConfig
from core.estimate import build_cost_model
from core.evaluate import evaluate
from core.export import export_onnx
from core.finetune import Recipe, fit, recalibrate_batchnorm
from core.hardware import choose_by_measurement, load_or_build
from core.latency import measure_interleaved
from core.metrics import total_flops
from core.models import load
from core.prune import calibration
from core.prune.channel import apply_channel
from core.sensitivity import SweepSpec, sweep

FACTORS = (2.0, 3.0, 4.0)
BATCHES = (1, 32)


def tp_uniform(spec, factor: float, round_to: int | None) -> torch.nn.Module | None:
    """Torch-Pruning's MetaPruner with one uniform ratio, bisected until MACs drop `factor` times;
    None if no ratio reaches it (round_to can forbid the narrow widths needed)."""
    base = total_flops(spec.model, spec.example_input)

    def prune(ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(spec.model)
        for p in model.parameters():
            p.requires_grad_(True)
        pruner = tp.pruner.MetaPruner(model, spec.example_input, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=[model.fc], round_to=round_to,
                                      in_channel_groups={}, out_channel_groups={}, num_heads={}, channel_groups={})
        pruner.step()
        return model.eval()

    lo, hi = 0.0, 0.95
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if base / total_flops(prune(mid), spec.example_input) >= factor else (mid, hi)
    model = prune(hi)
    return model if base / total_flops(model, spec.example_input) >= factor * 0.999 else None


def finetuned_accuracy(spec, model: torch.nn.Module) -> float:
    model = copy.deepcopy(model)
    recalibrate_batchnorm(model, calibration(spec, 512, 0).x)
    ft = FinetuneConfig(epochs=1)
    fit(model, spec.split.train_x, spec.split.train_y, Recipe(epochs=1, lr=ft.lr, batch_size=ft.batch_size), seed=0)
    return evaluate(model, spec.split.test_x, spec.split.test_y)["accuracy"]


def main() -> None:
    spec = load("mnist-resnet")
    table = sweep(spec, SweepSpec(spec.name, spec.fingerprint, "channel"))
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    base_onnx, _ = export_onnx(spec.model, spec.example_input)
    base_macs = total_flops(spec.model, spec.example_input)
    shape = tuple(spec.example_input.shape[1:])
    rows, unreachable = [], []
    for batch in BATCHES:
        lut = load_or_build(spec, list(cm.units), batch)
        models: dict[str, torch.nn.Module] = {}
        for factor in FACTORS:
            solve = lambda hw, f=factor: allocate("sensitivity", cm, Target("flops", f), table=table, hardware=hw)  # noqa: E731
            chosen, _ = choose_by_measurement(spec, solve, lut, base_onnx)
            hw_model = copy.deepcopy(spec.model)
            apply_channel(hw_model, chosen.ratios, spec.example_input)
            models[f"{factor:g}x PruneLab hardware-aware"] = hw_model
            for label, round_to in (("uniform", None), ("uniform, round_to=8", 8)):
                model = tp_uniform(spec, factor, round_to)
                if model is None:
                    unreachable.append(f"{factor:g}x Torch-Pruning {label}")
                else:
                    models[f"{factor:g}x Torch-Pruning {label}"] = model
        onnx = {"baseline": base_onnx, **{k: export_onnx(m, spec.example_input)[0] for k, m in models.items()}}
        timed = measure_interleaved(onnx, shape, batch=batch, rounds=12)
        for name, model in models.items():
            widths = _widths(model)
            rows.append((batch, name, base_macs / total_flops(model, spec.example_input),
                         timed["baseline"].median_ms / timed[name].median_ms, timed[name].median_ms,
                         timed[name].p90_ms, timed["baseline"].median_ms, widths, model))
    accuracy = {}
    lines = [
        "## Realized speed-up on mnist-resnet (onnxruntime, CPU)", "",
        f"Generated by `.venv/bin/python -m bench.speedup` on {time.strftime('%Y-%m-%d')} "
        f"(onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, Torch-Pruning {tp.__version__} "
        "(1.6.1 wheel), 1 onnxruntime thread). Each batch size is one interleaved run of all configs and the "
        "baseline (median, p90 in ms); accuracy after one epoch of fine-tuning, seed 0.", "",
        "| batch | config | MACs reduction | speed-up | median ms (p90) | baseline ms | stage widths | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, name, macs, speed, med, p90, base_ms, widths, model in rows:
        if name not in accuracy:
            accuracy[name] = finetuned_accuracy(spec, model)
        lines.append(f"| {batch} | {name} | {macs:.2f}x | {speed:.2f}x | {med:.3f} ({p90:.3f}) | {base_ms:.3f} | "
                     f"{widths} | {accuracy[name]:.4f} |")
    base_acc = evaluate(spec.model, spec.split.test_x, spec.split.test_y)["accuracy"]
    lines += ["", f"Baseline test accuracy {base_acc:.4f}; stage widths = output channels of the stem and of "
              "each stage's residual stream (16/32/64 unpruned)."]
    if unreachable:
        lines.append(f"No uniform ratio reaches the MAC target for: {', '.join(sorted(set(unreachable)))}.")
    text = "\n".join(lines)
    write_section("speedup", text)
    print(text)


def _widths(model: torch.nn.Module) -> str:
    return "/".join(str(c.out_channels) for c in (model.stem[0], model.layer2[0].conv2, model.layer3[0].conv2))


if __name__ == "__main__":
    main()

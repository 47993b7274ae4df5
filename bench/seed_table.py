"""Benchmark: the source document's results table, re-measured — ResNet-50 at 30% of filters and
MobileNetV2 at 40%, size and batch-1 latency before and after, PruneLab hardware-aware beside Torch-Pruning
used directly (uniform ratio; uniform with round_to=8) and beside the document's claim. Writes its section
of docs/benchmarks.md.

    .venv/bin/python -m bench.seed_table [--models resnet50 mobilenetv2]

The models are the reference zoo's (224x224, seeded random weights: size and latency are real, accuracy
is not measured). PruneLab's config comes from the `prunelab allocate --strategy uniform --hardware-aware`
logic: one ratio for every channel group, each width then the fast width at or below it in the measured
width-latency table (batch 1), the alignment chosen by timing whole models; its size target is the
document's figure for ResNet-50 (45 MB) and Torch-Pruning's own 40% result for MobileNetV2 (at least as
small). Everything of one model is timed in the same interleaved onnxruntime run (1 thread, batch 1).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import onnxruntime
import torch
import torch_pruning as tp

from bench.docs import write_section
from core.allocate import Target, allocate
from core.estimate import build_cost_model
from core.export import export_onnx
from core.graph import classifier
from core.hardware import choose_by_measurement, load_or_build
from core.latency import measure_interleaved
from core.metrics import size_bytes, total_flops
from core.models import load
from core.prune.channel import apply_channel


@dataclass(frozen=True)
class Claim:
    """A row of pruning-overview.txt's "Real Results": filter ratio, size MB and latency ms before/after."""

    ratio: float
    size_mb: tuple[float, float]
    latency_ms: tuple[float, float]

    def line(self) -> str:
        (s0, s1), (l0, l1) = self.size_mb, self.latency_ms
        return (f"{s0:g} → {s1:g} MB ({s0 / s1:.2f}x smaller), {l0:g} → {l1:g} ms ({l0 / l1:.2f}x faster), "
                "hardware unstated")


CLAIMS = {"resnet50": Claim(0.30, (102, 45), (22, 9)), "mobilenetv2": Claim(0.40, (14, 8.4), (150, 85))}


def tp_uniform(spec, ratio: float, round_to: int | None) -> torch.nn.Module:
    """Torch-Pruning's MetaPruner, one ratio for every group, L1 magnitude, the classifier left whole."""
    model = copy.deepcopy(spec.model)
    for p in model.parameters():
        p.requires_grad_(True)
    head = classifier(model, spec.example_input)
    pruner = tp.pruner.MetaPruner(model, spec.example_input, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[head], round_to=round_to,
                                  in_channel_groups={}, out_channel_groups={}, num_heads={}, channel_groups={})
    pruner.step()
    return model.eval()


def prunelab(spec, size_mb: float, base_onnx: bytes) -> tuple[torch.nn.Module, list[dict], float]:
    """Hardware-aware uniform allocation for an fp32 size target; returns the model, the alignment report
    and the seconds the width-latency table took (0 when it came from the cache)."""
    cm = build_cost_model(spec.model, spec.example_input, "channel")
    t0 = time.perf_counter()
    lut = load_or_build(spec, list(cm.units), batch=1, progress=lambda d, t: print(f"  table {d}/{t}", end="\r"))
    built = time.perf_counter() - t0
    chosen, report = choose_by_measurement(spec, lambda hw: allocate("uniform", cm, Target("size_mb", size_mb),
                                                                    hardware=hw), lut, base_onnx)
    if not chosen.met:
        raise SystemExit(f"{spec.name}: no hardware-aware uniform config meets {size_mb} MB")
    model = copy.deepcopy(spec.model)
    apply_channel(model, chosen.ratios, spec.example_input)
    return model.eval(), report, built


def measure_model(name: str) -> list[str]:
    claim, spec = CLAIMS[name], load(name)
    base_onnx, _ = export_onnx(spec.model, spec.example_input)
    models = {f"Torch-Pruning uniform {claim.ratio:.0%}": tp_uniform(spec, claim.ratio, None),
              f"Torch-Pruning uniform {claim.ratio:.0%}, round_to=8": tp_uniform(spec, claim.ratio, 8)}
    target = 45.0 if name == "resnet50" else size_bytes(next(iter(models.values()))) / 1e6
    hw_model, report, built = prunelab(spec, target, base_onnx)
    models[f"PruneLab hardware-aware (≤ {target:.1f} MB)"] = hw_model
    onnx = {"baseline": base_onnx, **{k: export_onnx(m, spec.example_input)[0] for k, m in models.items()}}
    timed = measure_interleaved(onnx, tuple(spec.example_input.shape[1:]), batch=1, rounds=12)
    base_mb, base_ms = size_bytes(spec.model) / 1e6, timed["baseline"].median_ms
    base_macs = total_flops(spec.model, spec.example_input) / 2
    lines = [f"### {name} ({spec.summary})", "", f"Source document: {claim.line()}.", "",
             "| config | fp32 MB | smaller | GMACs | median ms (p90) | faster |", "|---|---|---|---|---|---|",
             f"| baseline | {base_mb:.1f} | 1.00x | {base_macs / 1e9:.2f} | {base_ms:.2f} "
             f"({timed['baseline'].p90_ms:.2f}) | 1.00x |"]
    for label, model in models.items():
        mb, lat = size_bytes(model) / 1e6, timed[label]
        lines.append(f"| {label} | {mb:.1f} | {base_mb / mb:.2f}x | {total_flops(model, spec.example_input) / 2e9:.2f}"
                     f" | {lat.median_ms:.2f} ({lat.p90_ms:.2f}) | {base_ms / lat.median_ms:.2f}x |")
    tried = ", ".join(f"{r['align']}: {r['speedup']:.2f}x" for r in report if "speedup" in r)
    lines += ["", f"PruneLab's alignments tried (multiples of, whole-model speed-up at batch 1): {tried}; "
              f"width-latency table {'read from the cache' if built < 1 else f'measured in {built:.0f} s'}."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CLAIMS), choices=list(CLAIMS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # pruning and export; timing is onnxruntime's, pinned to 1 thread
    lines = ["## Seed table: ResNet-50 and MobileNetV2 against the source document (onnxruntime, CPU, batch 1)", "",
             f"Generated by `.venv/bin/python -m bench.seed_table` on {time.strftime('%Y-%m-%d')} (onnxruntime "
             f"{onnxruntime.__version__}, torch {torch.__version__}, Torch-Pruning {tp.__version__} (1.6.1 wheel), "
             "1 onnxruntime thread). Reference zoo models at 224x224 with seeded random weights: size and latency "
             "are measured, accuracy is not (no ImageNet here). fp32 MB = parameters and buffers x 4 bytes.", ""]
    for name in args.models:
        lines += measure_model(name) + [""]
    text = "\n".join(lines)
    write_section("seed-table", text)
    print(text)


if __name__ == "__main__":
    main()

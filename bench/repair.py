"""Benchmark: post-training repair, no fine-tuning (issue 14). Writes the `repair` section of docs/benchmarks.md.

    .venv/bin/python -m bench.repair [--seeds 0 1 2] [--models tiny-lm minilm mnist-resnet] [--parts masks structured]
                                     [--memory] [--memory-only]

Masks (tiny-lm: perplexity on its validation text; MiniLM: embedding fidelity on its own sentence set): dense,
then 50% unstructured per layer and 2:4 — magnitude, Wanda's scores, Wanda's masks repaired by exact least
squares, SparseGPT. Each repair and each data-dependent criterion sees `--calib` calibration examples drawn with
the seed (three draws by default); MiniLM's are sentences of Python's reference documentation (pydoc_data), never
the sentences its fidelity is measured on. "Gap closed" is the share of magnitude's loss the method wins back.

Structured, at half the FLOPs (the budget solver's uniform ratio): tiny-lm and MiniLM by FFN neurons, mnist-resnet by
channels, chosen by weight magnitude and by an activation-aware score — without repair, with FLAP-style bias
compensation and with least-squares refitting of the layers whose inputs were cut. `--memory` adds the peak
resident memory of repairing a 100M-parameter decoder's layers, measured in a fresh process as a whole and layer by
layer against issue 14's bound (`--memory-only`: that alone, ~5 minutes).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from bench.docs import commit, write_section
from core.allocate import Target
from core.config import Pattern, PruneConfig
from core.errors import PruneLabError
from core.evaluate import evaluate
from core.metric_keys import headline as headline_metric
from core.models import load
from core.plan import plan
from core.prune import apply
from core.repair import BLOCK
from core.repair_layers import BATCH_ROWS, HESSIAN_ROWS
from core.spec import ModelSpec
from core.workflows import SolveRequest, solve

RESULTS = Path(__file__).with_name("repair.json")
MASKS = {  # label: (method, criterion, repair)
    "magnitude": ("{m}", "l1", "none"), "Wanda": ("{m}", "wanda", "none"),
    "Wanda + least squares": ("{m}", "wanda", "lstsq"), "SparseGPT": ("{m}", "l1", "sparsegpt")}
SPARSITY = {"50% unstructured": ("unstructured", 0.5), "2:4": ("nm", None)}
STRUCTURED = {"tiny-lm": "neuron", "minilm": "neuron", "mnist-resnet": "channel"}
REPAIRS = ("none", "bias", "lstsq")
# which units the structured cut removes: by weight magnitude, or by the L2 norm of what they feed the next layer
# (activation-aware, on the calibration draw: FLAP pairs its compensation with such a criterion, its fluctuation)
STRUCTURED_CRITERIA = ("l1", "wanda")


def headline(spec: ModelSpec, model: torch.nn.Module) -> tuple[str, float, bool]:
    """(name, value, higher is better) of the model's task measure: perplexity, fidelity or accuracy."""
    values = dict(spec.metric(model)) if spec.metric is not None else {}
    if spec.has_data:
        values.update(evaluate(model, spec.split.test_x, spec.split.test_y))
    task = headline_metric(values)
    return task.key, float(values[task.key]), task.higher_is_better


def calibration_text(count: int = 1024) -> list[str]:
    """Sentences of Python's reference documentation (40-200 characters), in a fixed order."""
    from pydoc_data.topics import topics

    found = []
    for name in sorted(topics):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(topics[name].split())):
            if 40 <= len(sentence) <= 200:
                found.append(sentence)
    return found[:count]


def model(name: str) -> ModelSpec:
    """The registered model; MiniLM with calibration sentences that are not its fidelity set."""
    spec = load(name)
    if name == "minilm":
        from sample_models import minilm

        spec = replace(spec, sample_inputs=minilm.tokenize(calibration_text()))
    return spec


def masks(spec: ModelSpec, seed: int, calib: int) -> dict[str, dict[str, float]]:
    """{sparsity: {method: task measure}} for one calibration draw, plus the dense model's and timings."""
    out = {"dense": headline(spec, spec.model)[1]}
    for sparsity, (method, ratio) in SPARSITY.items():
        for label, (_, criterion, repair) in MASKS.items():
            t0 = time.perf_counter()
            ratios, _ = plan(spec, method, ratio, criterion=criterion, pattern=Pattern(2, 4))
            config = PruneConfig(spec.name, method, ratios, criterion=criterion, repair=repair, seed=seed,
                                 calibration_samples=calib, model_fingerprint=spec.fingerprint)
            out[f"{sparsity}|{label}"] = headline(spec, apply(spec, config).model)[1]
            out[f"{sparsity}|{label}|s"] = time.perf_counter() - t0
            print(spec.name, seed, sparsity, label, out[f"{sparsity}|{label}"], flush=True)
    return out


def recipe(spec: ModelSpec, seed: int, calib: int) -> dict[str, float]:
    """The source document's BERT example as a recipe: one layer dropped, then 30% of the weights left (by
    magnitude, or repaired by SparseGPT); the task measure after the first stage and after the second."""
    from core import schedule

    _, blocks = plan(spec, "layer", 1 / 6)
    first = PruneConfig(spec.name, "layer", {}, remove_blocks=blocks[:1], model_fingerprint=spec.fingerprint,
                        seed=seed, calibration_samples=calib)
    middle = apply(spec, first).model
    ratios, _ = plan(replace(spec, model=middle), "unstructured", 0.3)
    out = {"layer": headline(spec, middle)[1]}
    for repair in ("none", "sparsegpt"):
        then = PruneConfig(spec.name, "unstructured", ratios, repair=repair, seed=seed, calibration_samples=calib)
        out[repair] = headline(spec, schedule.train(spec, replace(first, then=(then,))).model)[1]
        print(spec.name, seed, "recipe", repair, out[repair], flush=True)
    return out


def half_flops(spec: ModelSpec, method: str) -> dict[str, float]:
    """The budget solver's uniform ratios that halve the FLOPs."""
    return solve(spec, SolveRequest(Target("flops", 2.0), strategy="uniform", method=method)).allocation.ratios


def structured_key(criterion: str, repair: str) -> str:
    """A structured figure's key in a run: the repair alone for magnitude (as recorded before other criteria)."""
    return repair if criterion == "l1" else f"{criterion}|{repair}"


def structured(spec: ModelSpec, seed: int, calib: int) -> dict[str, float]:
    """{criterion|repair: task measure} of the half-FLOPs cut, and the uniform ratio that reaches it."""
    method = STRUCTURED[spec.name]
    ratios = half_flops(spec, method)
    out = {"ratio": max(ratios.values())}
    for criterion in STRUCTURED_CRITERIA:
        for repair in REPAIRS:
            config = PruneConfig(spec.name, method, ratios, criterion=criterion, repair=repair, seed=seed,
                                 calibration_samples=calib, model_fingerprint=spec.fingerprint)
            key = structured_key(criterion, repair)
            out[key] = headline(spec, apply(spec, config).model)[1]
            print(spec.name, seed, "structured", key, out[key], flush=True)
    return out


PARTS = {"masks": masks, "structured": structured, "recipe": recipe}
# an entry's key for when each part was run
MEASURED = {"masks": "measured", "structured": "structured_measured", "recipe": "recipe_measured"}


def memory_probe(layers: int, width: int, tokens: int, how: str) -> dict:
    """In this (fresh) process: mask every Linear of a random decoder of `layers` x `width` to 50% — by magnitude
    (how="magnitude": torch.nn.utils.prune's masks alone) or repaired by SparseGPT on 8 x `tokens` calibration
    tokens; resident memory before and at peak, what one layer's repair needs at the least, and (repaired) each
    layer's own peak against its H plus its calibration inputs (_LayerPeaks)."""
    from core.prune.unstructured import apply_unstructured
    from core.repair_layers import repair_masks
    from sample_models.tiny_lm import TinyLM

    torch.manual_seed(0)
    net = TinyLM(vocab=256, dim=width, depth=layers, num_heads=width // 64, mlp_hidden=4 * width,
                 context=tokens).eval()
    x = torch.randint(0, 256, (8, tokens))
    with torch.no_grad():
        net(x)  # one forward pass first: its buffers are the model's, not the repair's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ratios = {n: 0.5 for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)}
    inputs = {n: m.in_features for n, m in net.named_modules() if n in ratios}
    peaks = _LayerPeaks()
    t0 = time.perf_counter()
    if how == "magnitude":
        apply_unstructured(net, ratios)
    else:
        repair_masks(net, x[:1], x, "sparsegpt", ratios, progress=peaks)
    widest = max(inputs.values())
    out = {"params": sum(p.numel() for p in net.parameters()), "layers": len(ratios), "rss_before": before,
           "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "seconds": time.perf_counter() - t0,
           "hessian_bytes": widest * widest * 8, "inputs_bytes": x.numel() * widest * 8,  # float64, as summed
           "weight_bytes": max(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear)) * 8}
    if peaks.layers:
        out["per_layer"] = {n: {**v, "bound": inputs[n] ** 2 * 8 + x.numel() * inputs[n] * 8}
                            for n, v in peaks.layers.items()}
    return out


class _LayerPeaks:
    """repair_masks' progress callback that reads, for each layer, the resident memory before its repair, at its
    peak and after it (Linux: /proc/self/status VmRSS and VmHWM; the peak is reset between layers through
    /proc/self/clear_refs), in bytes."""

    def __init__(self) -> None:
        self.layers: dict[str, dict[str, int]] = {}
        self.current: tuple[str, int] | None = None

    def __call__(self, done: int, total: int, name: str) -> None:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        rss, hwm = (int(status[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))
        if self.current is not None:
            self.layers[self.current[0]] = {"start": self.current[1], "peak": hwm, "end": rss}
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from the resident memory now
        self.current = (name, rss) if name else None


def memory() -> dict:
    """memory_probe of both ways, each in a fresh interpreter (ru_maxrss is a process's peak): what the repair
    holds beyond the masks themselves is the difference of the peaks."""
    out = {}
    for how in ("magnitude", "sparsegpt"):
        code = f"import json, bench.repair as b; print(json.dumps(b.memory_probe(14, 768, 64, {how!r})))"  # 99M
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parents[1],
                              env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)})
        out[how] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.4g}" + (f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else "")


def _gap(runs: list[dict], key: str) -> str:
    """Share of magnitude's loss a method wins back, per draw, then averaged: (magnitude - method) / (magnitude -
    dense), which reads the same whichever way the measure is better."""
    shares = []
    for run in runs:
        lost = run[f"{key.split('|')[0]}|magnitude"] - run["dense"]
        shares.append((run[f"{key.split('|')[0]}|magnitude"] - run[key]) / lost if lost else float("nan"))
    return f"{100 * statistics.mean(shares):.0f}%"


def table(results: dict) -> str:
    lines = ["## Post-training repair, no fine-tuning", "",
             "Generated by `.venv/bin/python -m bench.repair` (raw figures in `bench/repair.json`; each model's "
             "date and commit below, 1 torch thread). Mean ± standard deviation over "
             f"calibration draws {', '.join(map(str, results['seeds']))} ({results['calib']} examples each). "
             "MiniLM's calibration sentences come from Python's reference documentation, never its fidelity set. "
             "Gap closed: the share of magnitude's loss (against dense) the method wins back.", ""]
    for name, entry in results["models"].items():
        runs = list(entry["masks"].values())
        if not runs:
            continue
        metric, higher = entry["metric"], entry["higher_is_better"]
        lines += [f"### {name}: {metric} ({'higher' if higher else 'lower'} is better)", "",
                  f"Measured {_part_when(results, name, 'masks')}.", "",
                  "| sparsity | method | " + metric + " | gap closed | seconds |", "|---|---|---|---|---|",
                  f"| 0 | dense | {_mean([r['dense'] for r in runs])} | | |"]
        for sparsity in SPARSITY:
            for label in MASKS:
                key = f"{sparsity}|{label}"
                lines.append(f"| {sparsity} | {label} | {_mean([r[key] for r in runs])} | "
                             f"{'' if label == 'magnitude' else _gap(runs, key)} | "
                             f"{statistics.mean(r[key + '|s'] for r in runs):.0f} |")
        lines.append("")
    lines += ["### Structured, half the FLOPs, no fine-tuning", "",
              "Units chosen by weight magnitude (l1) or by the L2 norm of their outputs on the calibration draw "
              "(wanda: activation-aware, as FLAP chooses the units its bias compensation stands in for).", "",
              "| model | method, uniform ratio | criterion | task measure | no repair | bias (FLAP) | least squares "
              "| measured |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        for criterion in STRUCTURED_CRITERIA:
            runs = [r for r in entry["structured"].values() if structured_key(criterion, "none") in r]
            if runs:
                cells = " | ".join(_mean([r[structured_key(criterion, k)] for r in runs]) for k in REPAIRS)
                when = _part_when(results, name, "structured")
                lines.append(f"| {name} | {STRUCTURED[name]} {runs[0]['ratio']:.2f} | {criterion} | "
                             f"{entry['metric']} | {cells} | {when} |")
    if "memory" in results:
        lines += ["", f"Memory measured {results['memory'].get('measured', results['date'])}."]
    runs = list(results["models"].get("minilm", {}).get("recipe", {}).values())
    if runs:
        lines += ["", "### The source document's BERT example as a recipe, MiniLM, no fine-tuning", "",
                  "Stage 1 drops one of its six layers (the one that changes its input least); stage 2 removes 30% "
                  "of every remaining layer's weights. `prunelab apply` replays it with the same figures (test). "
                  f"Measured {_part_when(results, 'minilm', 'recipe')}.",
                  "", "| after | fidelity |", "|---|---|",
                  f"| stage 1: 5 of 6 layers | {_mean([r['layer'] for r in runs])} |",
                  f"| stage 2: + 30% by magnitude | {_mean([r['none'] for r in runs])} |",
                  f"| stage 2: + 30% repaired by SparseGPT | {_mean([r['sparsegpt'] for r in runs])} |"]
    if "memory" in results and "sparsegpt" in results["memory"]:
        lines += ["", _memory_note(results["memory"])]
    return "\n".join(lines)


def _memory_note(memory: dict) -> str:
    """The Memory paragraph: each layer's resident peak against issue 14's bound (the widest layer's H plus its
    calibration inputs), and both whole runs' peaks."""
    mag, sgpt = memory["magnitude"], memory["sparsegpt"]
    mib = 2**20
    bound = sgpt["hessian_bytes"] + sgpt["inputs_bytes"]
    text = (f"Memory (`--memory`, each in a fresh process): a random {sgpt['params'] / 1e6:.0f}M-parameter decoder "
            f"(width 768, MLP 3072), all {sgpt['layers']} Linear layers masked to 50%, repaired by SparseGPT on 8 x 64 "
            f"calibration tokens ({sgpt['seconds']:.0f} s). Issue 14's bound, the widest layer's H "
            f"({sgpt['hessian_bytes'] / mib:.0f} MiB) plus its calibration inputs ({sgpt['inputs_bytes'] / mib:.0f} "
            f"MiB, both float64), is {bound / mib:.0f} MiB. ")
    layers = sgpt.get("per_layer")
    if layers:
        text += _per_layer_note(layers, bound)
    text += (f"Whole runs: peak {mag['rss_peak'] / mib:.0f} MiB by magnitude (torch.nn.utils.prune keeps each "
             f"masked weight, its mask and the masked copy: {(mag['rss_peak'] - mag['rss_before']) / mib:.0f} MiB "
             f"over the model's {mag['rss_before'] / mib:.0f} MiB), {sgpt['rss_peak'] / mib:.0f} MiB repaired "
             f"(difference {(sgpt['rss_peak'] - mag['rss_peak']) / mib:.0f} MiB; the layer-by-layer figure is the "
             "repair's own). Earlier records of the same probe, by that difference: 277 MiB (the "
             "factor, the inverse and U each a copy of H), then 114 MiB (2026-11-30 10:52, commit 893ecba: "
             "cholesky_inverse's workspace, float64 copies of the weight, every calibration row in float64 at once). "
             "glibc's mmap threshold is fixed "
             "at 128 KiB in both processes, so freed matrices leave the resident set and the peak counts live "
             "memory, not the allocator's reuse of its heap.")
    return text


def _per_layer_note(layers: dict, bound: int) -> str:
    """Each layer's resident peak over the memory before it, against the bound; the widest layers' first apart (the
    math libraries' buffers are allocated then and kept: what it leaves resident says how much)."""
    mib = 2**20
    held = {n: v["peak"] - v["start"] for n, v in layers.items()}
    widest = [n for n, v in layers.items() if v["bound"] == bound]  # in the order they were repaired
    first, later = widest[0], widest[1:]
    kept = {n: layers[n]["end"] - layers[n]["start"] for n in widest}
    worst = max(held, key=held.get)
    over = [n for n, v in layers.items() if held[n] > v["bound"]]
    verdict = "within it" if held[worst] <= bound else f"{(held[worst] - bound) / mib:.1f} MiB above it"
    text = (f"Measured layer by layer (the resident peak during a layer's repair minus the resident memory before "
            f"it; the peak is reset between layers through /proc/self/clear_refs), the repair holds at most "
            f"{held[worst] / mib:.1f} MiB, at {worst}: {verdict}. ")
    if later:
        most = max(kept[n] for n in later)
        text += (f"The first layer of that width, {first}, held {held[first] / mib:.1f} MiB and left "
                 f"{kept[first] / mib:.1f} MiB resident after it, {(kept[first] - most) / mib:.1f} MiB more than any "
                 f"later one (memory allocated the first time and kept by the process); the {len(later)} later ones "
                 f"held at most {max(held[n] for n in later) / mib:.1f} MiB and left at most {most / mib:.1f} MiB "
                 "(their bool mask, attached once every layer is repaired). ")
    return text + (
        f"A layer's figure counts the forward passes that sum its H ({BATCH_ROWS} input rows each, H added "
        f"{HESSIAN_ROWS} rows at a time), H's factor formed in H's own storage, the weight repaired in place (float32, "
        f"one {BLOCK}-column block in float64) and its bool mask. Against each layer's own H plus inputs, "
        f"{len(over)} of {len(layers)} layers hold more: a 768-input layer's H is 4.5 MiB, less than the forward "
        "passes through the 3072-wide MLP or a "
        "3072-row weight's float64 column blocks and mask. ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(STRUCTURED), choices=list(STRUCTURED))
    parser.add_argument("--calib", type=int, default=128, help="calibration examples per draw")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                        help="which rows to re-measure (the others keep their recorded figures)")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--recipe-only", action="store_true", help="only the two-stage recipe rows (MiniLM): "
                        "--models minilm --parts recipe")
    parser.add_argument("--memory-only", action="store_true", help="only the memory probe (--memory, no models)")
    parser.add_argument("--write-only", action="store_true")
    args = parser.parse_args()
    if args.write_only:
        write_section("repair", table(json.loads(RESULTS.read_text())))
        return
    torch.set_num_threads(1)
    _code_commit()
    if args.recipe_only:
        args.models, args.parts = ["minilm"], ["recipe"]
    if args.memory_only:
        args.models, args.memory = [], True
    results = {}
    for name in args.models:
        try:
            spec = model(name)
        except PruneLabError as e:
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        metric, _, higher = headline(spec, spec.model)
        meta = {"metric": metric, "higher_is_better": higher}
        for part in args.parts:
            if (part == "masks" and name == "mnist-resnet") or (part == "recipe" and name != "minilm"):
                continue
            for seed in args.seeds:
                figures = PARTS[part](spec, seed, args.calib)
                results = _merge(lambda r, n=name, m=meta, p=part, s=seed, f=figures: _record(
                    r, n, m, p, s, f, args.calib))
    if args.memory:
        measured = memory()
        results = _merge(lambda r: r.update(memory={**measured, "measured": _stamp()}))
    if not results:
        return
    write_section("repair", table(results))
    print(table(results))


@functools.cache
def _code_commit() -> str:
    """The commit this process's code came from (read once, at its start: others may commit while it measures)."""
    return commit()


def _stamp() -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {_code_commit()}"


def _part_when(results: dict, name: str, part: str) -> str:
    """When a model's part was measured: from its draws' own stamps, else (older records) the entry's or the file's."""
    entry = results["models"][name]
    stamps = [r.get("measured") for r in entry.get(part, {}).values()]
    if stamps and all(stamps):
        return _when(stamps)
    return entry.get(MEASURED[part], entry.get("measured", results["date"]))


def _when(stamps: list[str]) -> str:
    """Stamps 'date, commit c' of several draws in one phrase: first-last date, then the commits."""
    dates = sorted(s.split(", commit ")[0] for s in stamps)
    commits = list(dict.fromkeys(s.split(", commit ")[-1] for s in stamps))
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1][11:]}"  # same day: time only
    return f"{span}, commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"


def _merge(change: Callable[[dict], None]) -> dict:
    """Apply `change` to the recorded results, re-read and written under an exclusive lock (parts and seeds may be
    measured in several processes at once: none may drop another's figures); the merged results."""
    with RESULTS.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"models": {}}
        change(results)
        partial = RESULTS.with_suffix(".json.partial")
        partial.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(partial, RESULTS)
    return results


def _record(results: dict, name: str, meta: dict, part: str, seed: int, figures: dict, calib: int) -> None:
    """One calibration draw's figures of one part, stamped with when and at which commit they were measured."""
    entry = results["models"].setdefault(name, {"masks": {}, "structured": {}})
    entry.update(meta)
    runs = entry.setdefault(part, {})
    runs[str(seed)] = {**figures, "measured": _stamp()}
    entry[MEASURED[part]] = _part_when(results, name, part)
    results.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=_code_commit(), calib=calib,
                   seeds=sorted({*results.get("seeds", []), seed}))


if __name__ == "__main__":
    main()

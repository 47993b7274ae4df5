"""Benchmark: pruning schedules at the same fine-tuning budget on every trained sample model, per-layer and global,
80% and 90% unstructured; writes bench/schedules.json (raw runs), its section of docs/benchmarks.md and
core/schedule_evidence.json (what the strategy helper reads).

    .venv/bin/python -m bench.schedules [--models M ...] [--seeds 0 1 2] [--ratios 0.8 0.9] [--scopes layer global]
        [--schedules NAME ...] [--epochs 3] [--write-only]

Each run: core.plan's unstructured ratios (magnitude; `layer`: the same share of every layer, `global`: one
threshold over all of them), the schedule from SCHEDULES, FinetuneConfig(epochs) with the model's own recipe
(core.recipes: the SAMPLE recipe for the image samples, the language-model recipe for tiny-lm); core.schedule gives
every schedule the same optimiser steps. The figure is the model's headline metric (core.metric_keys: test accuracy,
or validation perplexity for tiny-lm, lower better) of the model the schedule ends with. Every run is merged into
bench/schedules.json as soon as it ends (atomic write), so a long grid runs in parts and a kill loses one run;
`--write-only` rewrites the table and the evidence from that file. One torch thread.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bench.docs import commit, write_section
from core import recipes, schedule
from core.config import FinetuneConfig, PruneConfig, Schedule
from core.evaluate import evaluate
from core.files import write_atomic
from core.metric_keys import TaskMetric, headline
from core.models import available, load
from core.plan import plan
from core.schedule_evidence import PATH as EVIDENCE
from core.spec import ModelSpec
from core.strategy import detect_family

SCHEDULES: dict[str, Schedule] = {  # label -> schedule; every row of the table and the evidence follows from it
    "one-shot": Schedule("oneshot"),
    "iterative (3 rounds)": Schedule("iterative", steps=3),
    "iterative (3 rounds, 80% last)": Schedule("iterative", steps=3, last_round=0.8),
    "dynamic (AGP)": Schedule("dynamic", update_every=10),
}
ONE_SHOT = "one-shot"  # the reference every other schedule is compared with
RESULTS = Path(__file__).with_name("schedules.json")
TARGET = 0.5  # points: the bar for the best gradual schedule over one-shot
TARGET_MODEL, TARGET_RATIO = "mnist-resnet", 0.9  # where the issue sets it (both scopes)
SCOPES, RATIOS, SEEDS, EPOCHS = ("layer", "global"), (0.8, 0.9), (0, 1, 2), 3  # the full grid


def run_key(model: str, scope: str, ratio: float, label: str, seed: int, epochs: int = EPOCHS) -> str:
    """'mnist-resnet/global/0.9/one-shot/0'; a run at another budget than the grid's says it ('.../0/1 epochs')."""
    return f"{model}/{scope}/{ratio:g}/{label}/{seed}" + ("" if epochs == EPOCHS else f"/{epochs} epochs")


def read_results(path: Path = RESULTS) -> dict[str, dict]:
    """Every recorded run by run_key ({} before the first)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save(record: dict, path: Path = RESULTS) -> None:
    """Merge one run into the results file, re-read under an exclusive lock: parts of the grid may run at once in
    several processes, and a read-merge-write of one must not drop another's run."""
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        results = read_results(path)
        results[run_key(*(record[k] for k in ("model", "scope", "ratio", "schedule", "seed", "epochs")))] = record
        write_atomic(path, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())


def task(spec: ModelSpec, model: torch.nn.Module) -> tuple[TaskMetric, float]:
    """The model's headline metric and its value (evaluated on the test / validation split)."""
    values = dict(spec.metric(model)) if spec.metric is not None else {}
    values.update(evaluate(model, spec.split.test_x, spec.split.test_y))
    metric = headline(values)
    return metric, float(values[metric.key])


def finetune(spec: ModelSpec, epochs: int) -> tuple[str, FinetuneConfig]:
    """The model's own recipe (its name, and the budget with it filled in)."""
    choice = recipes.choose(spec)
    return choice.name, choice.fill(FinetuneConfig(epochs=epochs))


def measure(spec: ModelSpec, scope: str, ratio: float, label: str, seed: int, epochs: int, base: float) -> dict:
    """One run: prune spec's model to `ratio` with schedule `label`, fine-tune, and record the headline figure."""
    ratios, _ = plan(spec, "unstructured", ratio, scope=scope)
    recipe, ft = finetune(spec, epochs)
    config = PruneConfig(spec.name, "unstructured", ratios, model_fingerprint=spec.fingerprint, seed=seed,
                         finetune=ft, schedule=SCHEDULES[label])
    load_average = [round(x, 2) for x in os.getloadavg()]  # 1, 5, 15 min, before the run: the machine is shared
    start = time.perf_counter()
    trained = schedule.train(spec, config)
    seconds = time.perf_counter() - start
    metric, value = task(spec, trained.model)
    steps = -(-len(spec.split.train_x) // ft.batch_size) * epochs  # optimiser steps, the same for every schedule
    return {"model": spec.name, "family": detect_family(spec.model), "scope": scope, "ratio": ratio,
            "schedule": label, "kind": SCHEDULES[label].kind, "settings": asdict(SCHEDULES[label]), "seed": seed,
            "metric": metric.key, "value": value, "baseline": base, "epochs": epochs, "steps": steps,
            "recipe": recipe, "finetune": asdict(ft), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average": load_average, "seconds": round(seconds, 1)}


def run_grid(args: argparse.Namespace) -> None:
    for name in args.models:
        spec = load(name)
        _, base = task(spec, spec.model)
        for scope in args.scopes:
            for ratio in args.ratios:
                for label in args.schedules:
                    for seed in args.seeds:
                        record = measure(spec, scope, ratio, label, seed, args.epochs, base)
                        save(record)
                        print(f"{name} {scope} {ratio:g} {label} seed {seed}: {record['metric']} "
                              f"{record['value']:.4f} (baseline {base:.4f}), {record['seconds']:.1f} s", flush=True)


# --- summaries: from the raw runs to cells (model, scope, ratio) of per-schedule figures --------------------------


def metric_of(record: dict) -> TaskMetric:
    return headline({record["metric"]: record["value"]})


Cell = tuple[str, str, float, int]  # model, scope, ratio, epochs (a budget is compared only with itself)


def cells(results: dict[str, dict]) -> dict[Cell, dict[str, dict[int, dict]]]:
    """(model, scope, ratio, epochs) -> schedule label -> seed -> record, in the order of the grid."""
    out: dict[Cell, dict[str, dict[int, dict]]] = {}
    for r in sorted(results.values(), key=lambda r: (r["model"], SCOPES.index(r["scope"]), r["ratio"], r["epochs"],
                                                     r["seed"])):
        cell = (r["model"], r["scope"], r["ratio"], r["epochs"])
        out.setdefault(cell, {}).setdefault(r["schedule"], {})[r["seed"]] = r
    return out


def worst(metric: TaskMetric, values: list[float]) -> float:
    return min(values) if metric.higher_is_better else max(values)


def change(one_shot: dict[int, dict], other: dict[int, dict]) -> tuple[float, list[int]] | None:
    """other's mean vs one-shot's over the seeds both ran: positive = better, whichever way the metric is better;
    in points for a share (accuracy), else in the metric's units. None without a common seed."""
    seeds = sorted(set(one_shot) & set(other))
    if not seeds:
        return None
    metric = metric_of(next(iter(other.values())))
    gain = -metric.worsening(statistics.mean(one_shot[s]["value"] for s in seeds),
                             statistics.mean(other[s]["value"] for s in seeds))
    return gain * (100 if metric.percent else 1), seeds


def unit(metric: TaskMetric) -> str:
    return "points" if metric.percent else metric.key


def lead(runs: dict[str, dict[int, dict]]) -> tuple[str, float] | None:
    """The gradual schedule with the largest change vs one-shot in this cell, and that change."""
    found = [(label, c[0]) for label, seeds in runs.items()
             if label != ONE_SHOT and ONE_SHOT in runs and (c := change(runs[ONE_SHOT], seeds)) is not None]
    return max(found, key=lambda f: f[1], default=None)


# --- the table ----------------------------------------------------------------------------------------------------


def figure(metric: TaskMetric, seeds: dict[int, dict], one_shot: dict[int, dict] | None, label: str) -> str:
    """'0.9690 (0.9650)': mean (worst) over seeds; ✗ when a gradual schedule is below one-shot; [n seeds] when it
    ran other seeds than one-shot."""
    if not seeds:
        return ""
    values = [r["value"] for r in seeds.values()]
    text = f"{metric.fmt.format(statistics.mean(values))} ({metric.fmt.format(worst(metric, values))})"
    if one_shot is not None and label != ONE_SHOT:
        c = change(one_shot, seeds)
        text += " ✗" if c is not None and c[0] < 0 else ""
        text += f" [{len(seeds)} seeds]" if set(seeds) != set(one_shot) else ""
    return text


def lead_text(model: str, ratio: float, metric: TaskMetric, runs: dict[str, dict[int, dict]]) -> str:
    found = lead(runs)
    if found is None:
        return "n/a"
    label, gain = found
    mark = " ✓" if metric.percent and gain >= TARGET else ""
    target = " (target)" if (model, ratio) == (TARGET_MODEL, TARGET_RATIO) else ""
    return f"{gain:+.2f}{'' if metric.percent else ' ' + metric.key} ({label}){mark}{target}"


def table(results: dict[str, dict]) -> str:
    labels = [label for label in SCHEDULES if any(r["schedule"] == label for r in results.values())]
    labels += sorted({r["schedule"] for r in results.values()} - set(labels))  # labels since dropped from SCHEDULES
    rows = []
    for (model, scope, ratio, epochs), runs in cells(results).items():
        any_run = next(iter(next(iter(runs.values())).values()))
        metric, one = metric_of(any_run), runs.get(ONE_SHOT)
        seeds = ", ".join(map(str, sorted(one or {})))
        shown = " | ".join(figure(metric, runs.get(label, {}), one, label) for label in labels)
        rows.append(f"| {model} | {scope} | {ratio:.0%} | {epochs} | {seeds} | "
                    f"{metric.fmt.format(any_run['baseline'])} | {shown} | {lead_text(model, ratio, metric, runs)} |")
    head = ["| model | scope | removed | epochs | seeds | baseline | " + " | ".join(labels) +
            " | best gradual − one-shot |", "|---" * (7 + len(labels)) + "|"]
    return "\n".join(head + rows)


def coverage(results: dict[str, dict]) -> str:
    """Which rows of the full grid the table holds, in one sentence."""
    grid = [(m, s, r, EPOCHS) for m in available(trained_only=True) for s in SCOPES for r in RATIOS]
    have = set(cells(results)) & set(grid)
    missing = [f"{m} {s} {r:.0%}" for m, s, r, _ in grid if (m, s, r, EPOCHS) not in have]
    seeds = sorted({r["seed"] for r in results.values()})
    full = all(len({r["seed"] for r in results.values() if (r["model"], r["scope"], r["ratio"], r["epochs"]) == cell})
               >= len(SEEDS) for cell in grid)
    if not missing and full:
        return (f"Every row of the grid ({len(grid)}: {len(grid) // 4} models × 2 scopes × 2 ratios), "
                f"seeds {', '.join(map(str, seeds))}.")
    return (f"**Partial run**: {len(have)} of the grid's {len(grid)} rows (models × scopes × ratios) "
            f"measured, with the seeds listed per row (the grid has {len(SEEDS)}). Not measured yet: "
            f"{'; '.join(missing) or 'none'}.")


def budgets(results: dict[str, dict]) -> str:
    """Per model: epochs, optimiser steps and the recipe, as the runs recorded them."""
    seen: dict[str, str] = {}
    for r in sorted(results.values(), key=lambda r: r["model"]):
        seen.setdefault(r["model"], f"**{r['model']}** {r['epochs']} epochs = {r['steps']} optimiser steps, "
                        f"{recipes.describe(FinetuneConfig(**r['finetune']))} ({r['recipe']} recipe)")
    return "; ".join(seen.values())


def section(results: dict[str, dict]) -> str:
    dates = sorted({r["date"][:10] for r in results.values()})
    commits = sorted({r["commit"] for r in results.values()})
    threads = sorted({r["torch_threads"] for r in results.values()})
    seconds = [r["seconds"] for r in results.values()]
    return "\n".join([
        "## Schedules at the same fine-tuning budget (unstructured, every sample model)", "",
        f"Generated by `.venv/bin/python -m bench.schedules` (raw runs in `bench/schedules.json`; the table is "
        f"rewritten from it with `--write-only`), measured on {', '.join(dates)} at commit(s) {', '.join(commits)}, "
        f"torch {results and next(iter(results.values()))['torch']}, {'/'.join(map(str, threads))} torch thread(s), "
        f"{statistics.median(seconds):.1f} s per run (median) on a shared 2-core machine. {coverage(results)}", "",
        "Magnitude unstructured pruning to the share of weights shown: `layer` removes it from every layer, `global` "
        "with one threshold over all of them (core.plan). Every schedule spends the same fine-tuning budget, in the "
        "model's own recipe: " + budgets(results) + ". Schedules: " + "; ".join(
            f"**{label}** `{s}`" for label, s in SCHEDULES.items()) + ".", "",
        f"The issue's target: on {TARGET_MODEL} at {TARGET_RATIO:.0%}, per-layer and global, the best gradual "
        f"schedule at least {TARGET:+.1f} points above one-shot (marked ✓ wherever a lead reaches it). ✗ marks a "
        "gradual schedule whose mean is below one-shot's. Cells: mean (worst) over the seeds; test accuracy (0..1) "
        "for the image models, validation perplexity for tiny-lm (lower is better, its lead in perplexity: positive = "
        "lower than one-shot). 'best gradual − one-shot': difference of the means over the seeds both ran, in points "
        "of accuracy; positive = better than one-shot.", "",
        table(results), "",
        "The strategy helper reads these leads from `core/schedule_evidence.json` (written with this table): where "
        "the guide would recommend a gradual schedule that measured below one-shot on a model of the family, it says "
        "so and recommends what measured best."])


# --- the evidence the strategy helper reads ------------------------------------------------------------------------


def evidence(results: dict[str, dict]) -> dict:
    """Per family and model: each measured cell's changes vs one-shot (see core.schedule_evidence), at the grid's
    budget and longer ones (the helper's verdict reads the grid's, and names a longer budget where a schedule did
    better); a shorter trial run is no evidence about the schedules as the issue measures them."""
    families: dict[str, dict[str, dict]] = {}
    for (model, scope, ratio, epochs), runs in cells(results).items():
        if ONE_SHOT not in runs or epochs < EPOCHS:
            continue
        any_run = next(iter(runs[ONE_SHOT].values()))
        metric = metric_of(any_run)
        changes = {label: {"kind": next(iter(seeds.values()))["kind"],
                           "settings": next(iter(seeds.values()))["settings"],
                           "change": round(c[0], 4), "seeds": c[1]}
                   for label, seeds in runs.items() if label != ONE_SHOT and (c := change(runs[ONE_SHOT], seeds))}
        entry = families.setdefault(any_run["family"], {}).setdefault(model, {
            "metric": metric.key, "unit": unit(metric), "higher_is_better": metric.higher_is_better, "cells": []})
        entry["date"] = max([entry.get("date", ""), *(r["date"][:10] for s in runs.values() for r in s.values())])
        entry["cells"].append({"scope": scope, "ratio": ratio, "epochs": epochs, "seeds": sorted(runs[ONE_SHOT]),
                               "one_shot": round(statistics.mean(r["value"] for r in runs[ONE_SHOT].values()), 6),
                               "changes": changes})
    return {"source": "bench/schedules", "method": "unstructured",
            "note": "change: a schedule's mean vs one-shot's over the seeds both ran; positive = better than one-shot "
                    "(points of accuracy, or the metric's own units as 'unit' says)", "families": families}


def write(results: dict[str, dict]) -> None:
    write_section("schedules", text := section(results))
    write_atomic(EVIDENCE, (json.dumps(evidence(results), indent=1, sort_keys=True) + "\n").encode())
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=available(trained_only=True))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--scopes", nargs="+", choices=SCOPES, default=list(SCOPES))
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--write-only", action="store_true", help="rewrite the table and evidence from the JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.write_only:
        run_grid(args)
    write(read_results())


if __name__ == "__main__":
    main()

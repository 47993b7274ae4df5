"""The same sensitivity sweep on the local executor and on a local Ray cluster of 1 and 2 workers, and from those
measurements a projection of a ResNet-50 sweep on 1, 8 and 64 workers.

`python -m bench.executors [--model mnist-mobilenet] [--grid 0.25,0.5,0.75]`: a channel sweep (L1, 1,000
evaluation and 512 calibration images, seed 0, nothing cached) on the local executor (core.sensitivity.sweep, torch
on one thread, as every Ray worker runs), then for each cluster size: the start-up (ray.init, then one no-op trial
per worker, so every worker has started and imported torch), timed apart, and the sweep's unit trials
(core.sensitivity.sweep_part, what sweep() sends a non-local executor) run through RayExecutor, each timed on its
worker (wall and CPU seconds). Every Ray table must equal the local one (checked). CPU seconds are given beside
wall seconds because the machine is shared: the load average is recorded too. Writes the section "executors" of
docs/benchmarks.md.

The projection (on paper, labelled so): a ResNet-50 sweep on Ray is one trial per unit, each one evaluation per
ratio plus its set-up. The CPU seconds per grid point are measured on mnist-resnet (a local sweep at one ratio),
scaled (a) by the ratio of ResNet-50's FLOPs (224x224) to mnist-resnet's (core.metrics' one FLOP count, batch 1)
and (b), as a cross-check, by the ratio of their measured forward times per image (batches of 20, one thread):
a small model runs far below the CPU's peak FLOP rate, so (a) overstates. Same sample counts; W workers take
ceil(units / W) rounds of trials, plus the measured start-up.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import pandas as pd
import torch

from bench.docs import commit, write_section
from core.executors import LocalExecutor
from core.executors_ray import RayExecutor
from core.metrics import total_flops
from core.models import load
from core.sensitivity import SweepPart, SweepSpec, sweep, sweep_part, units

RESNET50_UNITS = 53  # channel groups of ResNet-50 (the figure)
RESNET50_RATIOS = 9  # the default grid 0.1 ... 0.9
PROJECTED_WORKERS = (1, 8, 64)


def noop(argument: int) -> int:
    """A trial that does nothing: starting every worker (and its torch import) is start-up, not sweep."""
    return argument


def timed_part(part: SweepPart) -> tuple[list[dict], float, float]:
    """sweep_part, with its wall and CPU seconds on the worker."""
    wall, cpu = time.perf_counter(), time.process_time()
    rows = sweep_part(part)
    return rows, time.perf_counter() - wall, time.process_time() - cpu


def load_average() -> float:
    return os.getloadavg()[0]


def on_local(spec, sweep_spec: SweepSpec) -> tuple[dict, pd.DataFrame]:
    load_before = load_average()
    wall, cpu = time.perf_counter(), time.process_time()
    table = sweep(spec, sweep_spec, use_cache=False, executor=LocalExecutor())
    return {"startup": 0.0, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "load": (load_before + load_average()) / 2}, table


def on_ray(spec, sweep_spec: SweepSpec, workers: int, local: pd.DataFrame) -> dict:
    start = time.perf_counter()
    executor = RayExecutor(workers=workers)
    executor.run(noop, [(str(i), i) for i in range(workers)])
    startup = time.perf_counter() - start
    load_before = load_average()
    try:
        wall = time.perf_counter()
        shared = executor.share(spec)
        items = [(u, SweepPart(sweep_spec, shared, (u,))) for u in units(spec, sweep_spec)]
        outcomes = executor.run(timed_part, items)
        wall = time.perf_counter() - wall
    finally:
        executor.close()
    rows = [row for o in outcomes for row in o.value[0]]
    pd.testing.assert_frame_equal(pd.DataFrame(rows)[list(local.columns)], local, check_exact=True)
    return {"startup": startup, "wall": wall, "cpu": sum(o.value[2] for o in outcomes),
            "trial_wall": [o.value[1] for o in outcomes], "trial_cpu": [o.value[2] for o in outcomes],
            "load": (load_before + load_average()) / 2}


def projection(per_point: float, setup: float, startup: float, ratio: float) -> list[tuple[int, float]]:
    """(workers, projected seconds) of a ResNet-50 sweep: rounds of unit trials, each set-up + its evaluations."""
    trial = (setup + RESNET50_RATIOS * per_point) * ratio
    return [(w, startup + math.ceil(RESNET50_UNITS / w) * trial) for w in PROJECTED_WORKERS]


def forward_cpu_per_image(spec, batch: int = 20, rounds: int = 2) -> float:
    """CPU seconds per image of the model's forward pass (one thread, no grad), after a warm-up batch."""
    x = torch.randn(batch, *spec.example_input.shape[1:])
    model = spec.model.eval()
    with torch.no_grad():
        model(x)
        start = time.process_time()
        for _ in range(rounds):
            model(x)
    return (time.process_time() - start) / (rounds * batch)


def reference(name: str) -> dict:
    """mnist-resnet's CPU per grid point (a local sweep at one ratio: 9 points and one set-up) and forward time."""
    spec = load(name)
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, "channel", "l1", (0.5,))
    cpu = time.process_time()
    table = sweep(spec, sweep_spec, use_cache=False, executor=LocalExecutor())
    return {"name": name, "per_point": (time.process_time() - cpu) / len(table),
            "flops": total_flops(spec.model, spec.example_input), "forward": forward_cpu_per_image(spec)}


def section(model: str, grid: tuple[float, ...], n_units: int, runs: dict[str, dict], ref: dict, big: dict) -> str:
    points = n_units * len(grid)
    local, one, two = runs["local"], runs["Ray, 1 worker"], runs["Ray, 2 workers"]
    per_point = local["cpu"] / points
    trial_cpu = sum(one["trial_cpu"]) / n_units
    setup = trial_cpu - len(grid) * per_point  # what a unit trial costs beyond its points (its own set-up)
    setup_text = (f"{setup:.2f} s of it set-up beyond its {len(grid)} points" if setup > 0 else
                  f"its set-up beyond its {len(grid)} points lost in the noise ({setup:+.2f} s)")
    by_flops, by_time = big["flops"] / ref["flops"], big["forward"] / ref["forward"]
    lines = [
        f"## Executors: a sensitivity sweep on the local executor and on Ray ({model})",
        "",
        f"`python -m bench.executors` (commit {commit()}, {time.strftime('%Y-%m-%d')}, this 2-core machine; other "
        f"work on it shows in the load average column): channel sweep, L1, {len(grid)} ratios "
        f"({', '.join(map(str, grid))}), 1,000 evaluation and 512 calibration images, {n_units} channel groups = "
        f"{points} grid points, nothing cached. Every process runs torch on one thread. Every Ray table equals the "
        "local one (checked, exactly).",
        "",
        "| executor | start-up (s) | sweep wall (s) | sweep CPU (s, the trials' own) | load average |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['startup']:.1f} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['load']:.1f} |")
    lines += [
        "",
        "Start-up: `ray.init` of a new local cluster, then one no-op trial per worker (each worker process started and "
        "torch imported). On Ray a sweep is one trial per unit; each trial sets its unit up again (scores, coupling "
        "graph, base evaluation), which the local executor does once. Ray's CPU column counts the trials' own CPU on "
        "the workers. With 2 workers on a 2-core machine that other work also uses, each worker got about "
        f"{sum(two['trial_cpu']) / sum(two['trial_wall']):.0%} of a core (trial CPU / trial wall), which bounds the "
        "speed-up.",
        "",
        f"Per trial, measured: {per_point:.2f} CPU s per grid point (local sweep); a unit trial on Ray (1 worker) "
        f"{trial_cpu:.2f} CPU s on average ({min(one['trial_cpu']):.2f}-{max(one['trial_cpu']):.2f}), "
        f"{setup_text}; with 2 workers, unit trials took {sum(two['trial_wall']) / n_units:.2f} s wall each on "
        "average.",
        "",
        f"**Projection, not a measurement**: a ResNet-50 channel sweep, {RESNET50_UNITS} groups x {RESNET50_RATIOS} "
        f"ratios = {RESNET50_UNITS * RESNET50_RATIOS} points, as {RESNET50_UNITS} unit trials, from "
        f"{ref['name']}'s measured {ref['per_point']:.2f} CPU s per grid point (a local sweep at one ratio, its one "
        f"set-up included) scaled by (a) the FLOP ratio ResNet-50 (224x224, {big['flops'] / 1e9:.2f} GFLOPs) / "
        f"{ref['name']} ({ref['flops'] / 1e6:.1f} MFLOPs) = {by_flops:,.0f}x (core.metrics, batch 1), or (b) the "
        f"ratio of their measured forward CPU time per image (batches of 20, one thread: {big['forward'] * 1e3:.0f} "
        f"ms / {ref['forward'] * 1e3:.2f} ms) = {by_time:,.0f}x. Same sample counts; each unit trial's set-up taken "
        f"as one more point; W workers run ceil({RESNET50_UNITS} / W) rounds, plus the 2-worker start-up measured "
        f"above ({two['startup']:.1f} s; a real cluster's differs). Assumes compute-bound trials, each worker a core "
        "as fast as one of this machine's, unloaded; moving ResNet-50's ~100 MB of weights to each worker once is "
        "not counted.",
        "",
        "| workers | projected wall time, (a) by FLOPs | (b) by measured forward time |",
        "|---:|---:|---:|",
    ]
    rows_a = projection(ref["per_point"], ref["per_point"], two["startup"], by_flops)
    rows_b = projection(ref["per_point"], ref["per_point"], two["startup"], by_time)
    for (w, a), (_, b) in zip(rows_a, rows_b, strict=True):
        lines.append(f"| {w} | {a / 3600:.1f} h | {b / 3600:.1f} h |")
    lines += ["", f"At 64 workers only {RESNET50_UNITS} are busy: a by-unit split is bounded by its slowest unit "
              "(splitting unit x ratio would go further, at the cost of more set-ups)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-mobilenet")
    parser.add_argument("--grid", default="0.25,0.5,0.75")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as on every Ray worker
    grid = tuple(float(r) for r in args.grid.split(","))
    spec = load(args.model)
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, "channel", "l1", grid)
    n_units = len(units(spec, sweep_spec))
    runs: dict[str, dict] = {}
    runs["local"], table = on_local(spec, sweep_spec)
    print("local", runs["local"], flush=True)
    for workers in (1, 2):
        name = f"Ray, {workers} worker{'s' if workers > 1 else ''}"
        runs[name] = on_ray(spec, sweep_spec, workers, table)
        print(name, runs[name], flush=True)
    ref = reference("mnist-resnet")
    print("reference", ref, flush=True)
    resnet50 = load("resnet50")
    big = {"flops": total_flops(resnet50.model, resnet50.example_input), "forward": forward_cpu_per_image(resnet50)}
    print("resnet50", big, flush=True)
    write_section("executors", text := section(args.model, grid, n_units, runs, ref, big))
    print(text)


if __name__ == "__main__":
    main()

"""The same sensitivity sweep on the local executor and on a local Ray cluster of 1 and 2 workers, and from those
measurements a projection of a ResNet-50 sweep on 1, 8 and 64 workers.

`python -m bench.executors [--model mnist-mobilenet] [--grid 0.1,...,0.9]`: a channel sweep (L1, 1,000 evaluation
and 512 calibration images, seed 0, nothing cached) timed on the local executor (torch on one thread, as every
Ray worker runs), then for each cluster size: the start-up (ray.init, then one no-op trial per worker, so every
worker has started and imported torch) timed apart from the sweep. Every table must equal the local one (checked).
Writes the section "executors" of docs/benchmarks.md.

The projection (on paper, labelled so): a sweep is one trial per unit on Ray; a unit's trial costs its set-up
(scores, coupling graph, base evaluation: measured as the 1-worker sweep's time beyond the local one, per unit)
plus one evaluation per ratio (measured: the local sweep's time per grid point). Both are scaled by the ratio of
ResNet-50's FLOPs (224x224) to this model's (core.metrics' one FLOP count, batch 1), with the same evaluation and
calibration sample counts; W workers take ceil(units / W) rounds of trials, plus the measured start-up.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch

from bench.docs import commit, write_section
from core.executors import LocalExecutor
from core.executors_ray import RayExecutor
from core.metrics import total_flops
from core.models import load
from core.sensitivity import DEFAULT_GRID, SweepSpec, sweep, units

RESNET50_UNITS = 53  # channel groups of ResNet-50 (the figure; core.graph finds the same on the zoo model)
PROJECTED_WORKERS = (1, 8, 64)


def noop(argument: int) -> int:
    """A trial that does nothing: starting every worker (and its torch import) is start-up, not sweep."""
    return argument


def timed_sweep(spec, sweep_spec: SweepSpec, executor) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    table = sweep(spec, sweep_spec, use_cache=False, executor=executor)
    return time.perf_counter() - start, table


def on_ray(spec, sweep_spec: SweepSpec, workers: int, local: pd.DataFrame) -> dict:
    start = time.perf_counter()
    executor = RayExecutor(workers=workers)
    executor.run(noop, [(str(i), i) for i in range(workers)])
    startup = time.perf_counter() - start
    try:
        seconds, table = timed_sweep(spec, sweep_spec, executor)
    finally:
        executor.close()
    pd.testing.assert_frame_equal(table, local, check_exact=True)  # the same figures, or no row at all
    return {"startup": startup, "sweep": seconds}


def projection(per_point: float, setup: float, startup: float, ratio: float, points: int) -> list[tuple[int, float]]:
    """(workers, projected seconds) of a ResNet-50 sweep: rounds of unit trials, each set-up + points evaluations."""
    trial = (setup + points * per_point) * ratio
    return [(w, startup + math.ceil(RESNET50_UNITS / w) * trial) for w in PROJECTED_WORKERS]


def section(model: str, grid: tuple[float, ...], n_units: int, local: float, ray: dict[int, dict],
            flops: tuple[int, int]) -> str:
    points = n_units * len(grid)
    per_point = local / points
    setup = max(0.0, (ray[1]["sweep"] - local) / n_units)
    ratio = flops[1] / flops[0]
    lines = [
        f"## Executors: a sensitivity sweep on the local executor and on Ray ({model})",
        "",
        f"`python -m bench.executors` (commit {commit()}, {time.strftime('%Y-%m-%d')}, this 2-core machine, shared "
        f"with other work): channel sweep, L1, {len(grid)} ratios ({', '.join(map(str, grid))}), 1,000 evaluation "
        f"and 512 calibration images, {n_units} channel groups = {points} grid points, nothing cached. Every "
        "process runs torch on one thread. Every Ray table equals the local one (checked, exactly).",
        "",
        "| executor | start-up (s) | sweep (s) | total (s) |",
        "|---|---:|---:|---:|",
        f"| local (this process) | 0 | {local:.1f} | {local:.1f} |",
    ]
    for w, r in sorted(ray.items()):
        lines.append(f"| Ray, local cluster, {w} worker{'s' if w > 1 else ''} | {r['startup']:.1f} | "
                     f"{r['sweep']:.1f} | {r['startup'] + r['sweep']:.1f} |")
    lines += [
        "",
        "Start-up: `ray.init` of a new local cluster, then one no-op trial per worker (each worker process started and "
        "torch imported). On Ray a sweep is one trial per unit; each trial sets its unit up again (scores, coupling "
        "graph, base evaluation), which the local executor does once.",
        "",
        f"Measured per trial: {per_point:.2f} s per grid point (local sweep / {points} points); "
        f"{setup:.2f} s of set-up per unit trial on Ray (1-worker sweep minus local sweep, / {n_units} units).",
        "",
        f"**Projection, not a measurement**: a ResNet-50 channel sweep, {RESNET50_UNITS} groups x 9 ratios = "
        f"{RESNET50_UNITS * 9} points, as {RESNET50_UNITS} unit trials. Per-point and set-up times scaled by the "
        f"FLOP ratio ResNet-50 (224x224, {flops[1] / 1e9:.2f} GFLOPs) / {model} ({flops[0] / 1e6:.2f} MFLOPs) = "
        f"{ratio:,.0f}x (core.metrics, batch 1; same sample counts), W workers run ceil({RESNET50_UNITS} / W) "
        f"rounds, plus the 2-worker start-up measured above ({ray[max(ray)]['startup']:.1f} s; a real cluster's "
        "differs). Assumes compute-bound trials on workers as fast as one core here.",
        "",
        "| workers | projected wall time |",
        "|---:|---:|",
    ]
    for w, seconds in projection(per_point, setup, ray[max(ray)]["startup"], ratio, 9):
        lines.append(f"| {w} | {seconds / 3600:.1f} h |")
    lines += ["", f"At 64 workers only {RESNET50_UNITS} are busy: a by-unit split is bounded by its slowest unit "
              "(splitting unit x ratio would go further, at the cost of more set-ups)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-mobilenet")
    parser.add_argument("--grid", default=",".join(map(str, DEFAULT_GRID)))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as on every Ray worker
    grid = tuple(float(r) for r in args.grid.split(","))
    spec = load(args.model)
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, "channel", "l1", grid)
    n_units = len(units(spec, sweep_spec))
    local, table = timed_sweep(spec, sweep_spec, LocalExecutor())
    print(f"local: {local:.1f} s", flush=True)
    ray = {}
    for workers in (1, 2):
        ray[workers] = on_ray(spec, sweep_spec, workers, table)
        print(f"ray {workers}: {ray[workers]}", flush=True)
    resnet50 = load("resnet50")
    flops = (total_flops(spec.model, spec.example_input), total_flops(resnet50.model, resnet50.example_input))
    write_section("executors", text := section(args.model, grid, n_units, local, ray, flops))
    print(text)


if __name__ == "__main__":
    main()

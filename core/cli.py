"""The `prunelab` command: baseline, layers, prune, apply, experiments and dashboard, without a browser.

Every user error ends in one line on stderr and exit status 2; long steps show progress bars on stderr,
so stdout stays clean for --json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path

from core import executors, methods, recipes
from core.allocate import STRATEGIES, TARGETS, Target
from core.config import (
    LIMITS,
    QUANTIZE,
    FinetuneConfig,
    Pattern,
    PruneConfig,
    Schedule,
    check_int,
    parse_json,
    read_json_file,
)
from core.deploy import deploy_folder
from core.errors import PruneLabError
from core.experiment import baseline, finetune_verdict
from core.export_hf import check_hf_compatible, layer_stack_units
from core.files import write_atomic
from core.hardware import cached
from core.importance import REGISTRY as CRITERIA
from core.jobs import PASSIVE
from core.metric_keys import PERPLEXITY_METRIC, ModelMetrics, latency_key, sweep_metric, task_metrics
from core.models import available, load, replay_reference
from core.plan import plan
from core.prune import check_config_matches
from core.search import DRIVER, SearchReport, SearchSpec, run_search
from core.sensitivity import SweepSpec, cache_path, read_table, sweep
from core.store import STATUSES, Store
from core.user_data import data_reference, label_note
from core.workflows import SolveOutcome, SolveRequest, check_units, defaults, run_and_record, solve, swept_by
from core.workflows.export_run import FILE_NAMES, FORMATS, find_run, model_folder, run_file, run_hf, run_pt2
from core.workflows.outputs import check_out_file, check_run_folder, parent_run

METRIC_ROWS = [  # (key, label, format) for the human-readable summary; task measures follow (core.metric_keys)
    ("params", "parameters", "{:,.0f}"),
    ("nonzero_params", "non-zero parameters", "{:,.0f}"),
    ("size_bytes", "fp32 size (bytes)", "{:,.0f}"),
    ("flops", "FLOPs (batch 1)", "{:,.0f}"),
]


def _latency_rows(batches: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """Median latency rows, onnxruntime then eager torch, for each batch size measured."""
    rows = []
    for runtime, shown in (("onnxruntime", "ORT"), ("torch", "torch")):
        for b in batches:
            rows.append((latency_key(b, "median", runtime), f"{shown} latency b{b} median (ms)", "{:.4f}"))
    return rows


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PruneLabError(message)


def _ratio(text: str) -> float:
    """argparse type: a fraction removed, 0 <= R < 1 (argparse names the option in its message)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


@contextlib.contextmanager
def _bar(desc: str):
    """A progress(done, total) callback drawing one tqdm bar on stderr, closed on exit."""
    from tqdm import tqdm

    with tqdm(total=1, desc=desc, file=sys.stderr, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        yield progress


@contextlib.contextmanager
def _progress():
    """A StageProgress drawing one tqdm bar per stage on stderr; the bar is closed however the run ends,
    so an error message starts on a line of its own."""
    from tqdm import tqdm

    state: dict = {"stage": None, "bar": None}

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    def update(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            close()
            state["stage"] = stage
            state["bar"] = None if stage == "done" else tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        if state["bar"] is not None:
            state["bar"].total = total
            state["bar"].update(done - state["bar"].n)

    try:
        yield update
    finally:
        close()


def _table(columns: dict[str, dict]) -> str:
    lines = [f"{'':30}" + "".join(f"{c:>18}" for c in columns)]
    first = next(iter(columns.values()))
    rows = METRIC_ROWS + _latency_rows(ModelMetrics.from_dict(first).latency_batches)
    for key, label, fmt in rows:
        cells = [fmt.format(m[key]) if m.get(key) is not None else "n/a" for m in columns.values()]
        lines.append(f"{label:30}" + "".join(f"{c:>18}" for c in cells))
    for task in task_metrics(first):  # the baseline's: a pruned model is measured the same way
        lines.append(f"{task.label:30}" + "".join(f"{task.show(m.get(task.key)):>18}" for m in columns.values()))
    return "\n".join(lines)


def cmd_baseline(args: argparse.Namespace) -> None:
    metrics = baseline(_load(args), threads=args.threads, batches=args.latency_batches).metrics
    print(json.dumps(metrics, sort_keys=True) if args.json else _table({args.model: metrics}))


def cmd_layers(args: argparse.Namespace) -> None:
    method = methods.get(args.method)
    spec = _load(args)
    rows = [{"name": u.name, "size": u.size, "coupled": sorted({m.name for m in u.members} - {u.name})}
            for u in method.units(spec.model, spec.example_input)]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['name']:32} {r['size']:>8} {method.unit}  coupled: {', '.join(r['coupled']) or '-'}")


def _ratios_from_file(path: str) -> tuple[dict[str, float], str | None]:
    """Per-layer ratios from a PruneConfig file or a plain {"layer": ratio} JSON object."""
    data = parse_json(read_json_file(path, "ratios file"), path)
    if isinstance(data, dict) and "version" in data:
        cfg = PruneConfig.from_dict(data)
        return cfg.ratios, cfg.method
    if not isinstance(data, dict):
        raise PruneLabError(f"{path} must hold a PruneLab config or a JSON object of layer -> ratio")
    return data, None


def _warn(message: str) -> None:
    print(f"prunelab: warning: {message}", file=sys.stderr)


def _run_and_write(spec, config, outdir: Path, threads: int, batches: tuple[int, ...] | None = None,
                   parent: str | None = None, force: bool = False) -> None:
    """Run and record (core.workflows.run_and_record: outdir is the run's folder, claimed first; force moves a run
    already there aside), then print what was measured and written."""
    with _progress() as progress:
        out, paths = run_and_record(spec, config, outdir, threads, progress, batches, parent, force,
                                    hardware=cached(spec, batch=1), warn=_warn)
    print(_table({"baseline": out.baseline, "pruned": out.pruned, **({"pruned, int8": out.int8} if out.int8 else {})}))
    if out.int8:
        print(f"int8: {out.int8['onnx_bytes']:,} bytes of ONNX against {out.pruned['onnx_bytes']:,} in float32; "
              f"{out.int8['how']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if out.clamped:
        print(f"note: these ratios would have emptied {', '.join(out.clamped)}: one weight/channel/head was kept in "
              "each (recorded in metrics.json as clamped)")
    if verdict := finetune_verdict(out.pruned):
        print(f"note: {verdict}")
    if error := out.pruned.get("onnx_error"):
        print(f"note: no model.onnx: {error} (size, FLOPs, accuracy and torch latency above are measured in torch)")
    if alt := out.aligned_alternative:
        print(f"note: snapping slow widths to fast ones runs {alt['speedup']:.2f}x faster at batch {alt['batch']} "
              f"({alt['latency_ms']:.4f} vs {alt['config_latency_ms']:.4f} ms): ratios {alt['ratios']} "
              "(recorded in metrics.json as aligned_alternative)")


def cmd_prune(args: argparse.Namespace) -> None:
    outdir = check_run_folder(args.out, args.force)
    settings = _settings(args)  # every option checked before the model loads
    method, blocks = args.method, ()
    if args.config:
        ratios, file_method = _ratios_from_file(args.config)
        if file_method and method and file_method != method:
            raise PruneLabError(f"{args.config} is a {file_method} config but --method is {method}")
        method = method or file_method
    if method is None:
        raise PruneLabError(f"--method is required ({', '.join(methods.names())})")
    methods.get(method).check_criterion(args.criterion)  # a pair the method cannot rank by: refused before work
    if args.ratio is None and not args.config and methods.get(method).needs_ratio:
        raise PruneLabError("give --ratio R or --config FILE")
    spec = _load(args)
    settings["finetune"] = _with_recipe(spec, settings["finetune"], args)
    if not args.config:
        ratios, blocks = plan(spec, method, args.ratio, criterion=args.criterion, pattern=settings["pattern"],
                              scope=args.scope, rank=args.rank, seed=args.seed)
    if args.hf_compatible:
        ratios = layer_stack_units(spec.model, ratios)
    config = PruneConfig(model=spec.name, method=method, ratios=ratios, criterion=args.criterion,
                         model_fingerprint=spec.fingerprint, remove_blocks=blocks, **settings)
    check_units(spec, config, hint=f"; see: prunelab layers {spec.name} --method {config.method}")
    if args.hf_compatible:
        check_hf_compatible(spec, config)  # before any fine-tuning: a cut the config cannot describe is refused
    _run_and_write(spec, config, outdir, args.threads, args.latency_batches, force=args.force)


def _check_ints(args: argparse.Namespace, *names: str) -> None:
    """Integer options within core.config.LIMITS, checked before the model loads (the message has the range)."""
    for name in names:
        check_int(name, getattr(args, name), "--" + name.replace("_", "-"))


def _settings(args: argparse.Namespace) -> dict:
    """prune's seed, pattern, schedule and fine-tuning options as PruneConfig fields, each validated (with
    its allowed range in the message) before any slow work."""
    return dict(seed=check_int("seed", args.seed), pattern=Pattern(*args.nm, block=args.block), repair=args.repair,
                quantize=args.quantize, calibration_samples=check_int("calibration_samples", args.calibration_samples),
                schedule=Schedule(args.schedule, args.steps, args.curve, args.update_every, args.last_round),
                finetune=FinetuneConfig(epochs=args.finetune_epochs, distill=args.distill, temperature=args.temperature,
                                        alpha=args.alpha, rewind=args.rewind, **_given_recipe(args)))


def _given_recipe(args: argparse.Namespace) -> dict:
    """The fine-tune recipe fields the user set (--lr, --optimizer); core.recipes chooses the others."""
    return {name: getattr(args, name) for name in ("lr", "optimizer", "batch_size") if getattr(args, name) is not None}


def _with_recipe(spec, finetune: FinetuneConfig, args: argparse.Namespace) -> FinetuneConfig:
    """finetune with the recipe chosen for spec's model (core.recipes) where the user set nothing; printed."""
    given = set(_given_recipe(args))
    choice = recipes.choose(spec)
    finetune = choice.fill(finetune, given)
    if finetune.epochs:
        print(f"fine-tune recipe: {recipes.explain(choice, finetune, given)}")
    return finetune


def _nm(text: str) -> tuple[int, int]:
    """argparse type: N:M, e.g. 2:4."""
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, got {text!r}")
    return int(n), int(m)


def _block(text: str) -> tuple[int, int]:
    """argparse type: ROWSxCOLS, e.g. 4x1."""
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.strip().isdigit() or not cols.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS such as 4x1, got {text!r}")
    return int(rows), int(cols)


def cmd_apply(args: argparse.Namespace) -> None:
    outdir = check_run_folder(args.out, args.force)
    config = PruneConfig.load(args.config)
    if args.finetune_epochs is not None:  # every stage of a recipe
        config = _with_epochs(config, args.finetune_epochs)
    spec, config = _replay_model(args, config, args.config)
    check_config_matches(spec, config)
    if config.finetune.epochs:
        print(f"fine-tune recipe: {recipes.describe(config.finetune)} (the config's)")
    check_units(spec, config, hint=f"; see: prunelab layers {spec.name} --method {config.method}")
    _run_and_write(spec, config, outdir, args.threads, args.latency_batches, parent_run(Path(args.config), _warn),
                   force=args.force)


def _with_epochs(config: PruneConfig, epochs: int) -> PruneConfig:
    """config with `epochs` of fine-tuning in each of its stages."""
    def one(stage: PruneConfig) -> PruneConfig:
        return dataclasses.replace(stage, finetune=dataclasses.replace(stage.finetune, epochs=epochs), then=())
    return dataclasses.replace(one(config), then=tuple(one(s) for s in config.then))


def _replay_model(args: argparse.Namespace, config, source: str):
    """(spec, config) for replaying `config` from `source`: its model only if the user allowed it (a registry
    name, --model, or --trust-code; core.models.replay_reference), the config renamed to a --model given."""
    spec = _load(args, replay_reference(config.model, source, args.model, args.trust_code))
    if not config.model_fingerprint:
        _warn(f"{source} has no model_fingerprint: the weights it is replayed onto are not checked")
    return spec, config.for_model(spec.name)


def _batches(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive batch sizes, e.g. 1,32."""
    try:
        values = tuple(dict.fromkeys(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, got {text!r}") from None
    if not values or any(v < 1 or v > 4096 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be 1..4096, got {text!r}")
    return values


def _grid(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated ratios strictly between 0 and 1."""
    try:
        grid = tuple(sorted({round(float(t), 4) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not grid or any(not 0 < r < 1 for r in grid):
        raise argparse.ArgumentTypeError(f"ratios must lie strictly between 0 and 1, got {text!r}")
    return grid


def cmd_sensitivity(args: argparse.Namespace) -> None:
    out = check_out_file(args.out)
    _check_ints(args, "eval_samples", "calibration_samples", "seed")
    executor = _executor(args)
    spec = _load(args)
    sweep_spec = SweepSpec(spec.name, spec.fingerprint, args.granularity, args.criterion, args.grid,
                           args.eval_samples, args.calibration_samples, args.seed)
    cached = cache_path(sweep_spec).exists() and not args.no_cache
    with _bar("sensitivity") as progress, contextlib.closing(executor):
        table = sweep(spec, sweep_spec, progress, use_cache=not args.no_cache, executor=executor)
    try:
        table.to_csv(out, index=False)
    except OSError as e:
        raise PruneLabError(f"cannot write {out}: {e}") from None
    judged = sweep_metric(table.columns)  # accuracy, or a language model's perplexity (lower is better)
    worst = table.sort_values(judged.change_name, ascending=False).iloc[0]
    print(f"{len(table)} rows ({table['unit'].nunique()} units x {len(args.grid)} ratios)"
          f"{' from the cache' if cached else ''} -> {out}")
    change = (f"drop {100 * worst[judged.change_name]:.2f} points" if judged.percent
              else f"increase {worst[judged.change_name]:+.3f}")  # on the sweep's own training windows
    print(f"most sensitive: {worst['unit']} at {worst['ratio']}: {judged.key} {judged.show(worst[judged.key])} "
          f"({change})")


def _lock(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected UNIT=RATIO, got {text!r}")
    return name, _ratio(value)


TARGET_OPTIONS = {"flops": "target_flops", "params": "target_params", "size_mb": "target_size_mb",
                  "latency_ms": "target_latency_ms", "speedup": "target_speedup"}  # Target kind: its option


def cmd_allocate(args: argparse.Namespace) -> None:
    """A SolveRequest from the options, solved by core.workflows.solve (as the Tune page's solver); the config
    written and the outcome printed."""
    target = next(Target(k, getattr(args, o)) for k, o in TARGET_OPTIONS.items() if getattr(args, o) is not None)
    out = check_out_file(args.out)
    _check_ints(args, "calibration_samples", "seed")
    if args.strategy == "sensitivity" and not args.sensitivity:
        raise PruneLabError("the sensitivity strategy needs --sensitivity FILE.csv (from `prunelab sensitivity`); "
                            "or choose --strategy uniform or global")
    spec = _load(args)
    table = read_table(args.sensitivity, spec.name) if args.sensitivity else None
    method, criterion = swept_by(table) if table is not None else (args.method, args.criterion)
    request = SolveRequest(target, args.strategy, method, criterion, args.min_ratio, args.max_ratio,
                           dict(args.lock or []), table, args.calibration_samples, args.seed, args.latency_batch,
                           args.hardware_aware, args.hf_compatible)
    with _progress() as progress:
        outcome = solve(spec, request, progress)
    if args.hf_compatible:
        check_hf_compatible(spec, outcome.config(spec))
    try:
        outcome.config(spec).save(out)
    except OSError as e:
        raise PruneLabError(f"cannot write {out}: {e}") from None
    _print_allocation(outcome, args.out)


def _print_allocation(outcome: SolveOutcome, out: str) -> None:
    """The solver's verdict, its estimate against the baseline's, the predicted drop and how to run it."""
    result, base, target = outcome.allocation, outcome.base_estimate, outcome.request.target
    if outcome.hardware is not None:
        _print_candidates(outcome)
    print(f"{result.strategy} allocation for {target.kind} {target.value}: "
          f"{'met' if result.met else 'NOT met within the bounds'}")
    for key in ("params", "nonzero_params", "flops", "sparse_flops", "size_bytes"):
        print(f"  {key:16} {result.estimate[key]:>14,} of {base[key]:>14,} ({result.estimate[key] / base[key]:.3f}) "
              "estimate")
    if prediction := outcome.prediction:
        print(f"  predicted accuracy drop {100 * prediction['drop']:.2f} points (sum of single-unit drops, "
              "before fine-tuning)")
        if (increase := prediction.get(PERPLEXITY_METRIC.change_name)) is not None:
            print(f"  predicted {PERPLEXITY_METRIC.key} increase {increase:+.3f} (sum of single-unit increases, "
                  "before fine-tuning; the solver minimised it)")
    print(f"wrote {out}; run it with: prunelab apply {out} --finetune-epochs 1 --out DIR")
    if not result.met:
        raise PruneLabError("the target cannot be met within the given bounds; the closest config was written")


def _print_candidates(outcome: SolveOutcome) -> None:
    """Hardware-aware: the width table's block and each alignment's candidate, measured against the baseline."""
    table = outcome.hardware
    print(f"hardware-aware: the runtime's channel blocks measure {table.round_to()} wide "
          f"({table.runtime}); candidates, measured against the baseline:")
    for row in outcome.candidates:
        speed = f"{row['speedup']:.2f}x faster" if "speedup" in row else "not built (target not met)"
        drop = "" if row["predicted_drop"] is None else f", predicted drop {100 * row['predicted_drop']:.1f} points"
        print(f"  widths in multiples of {row['align']:>2}: {speed}{drop}")


def cmd_search(args: argparse.Namespace) -> None:
    """The grid of solve -> apply trials (core.search.run_search): a line per trial as it lands, with the time
    left, then every trial and the Pareto fronts."""
    search = SearchSpec(args.model, args.targets, args.strategies, tuple(range(args.seeds)), args.finetune_epochs,
                        args.hardware_aware, args.target_kind, args.method, args.criterion)  # checked before loading
    executor = _executor(args)
    spec = _load(args)
    with _progress() as progress, contextlib.closing(executor):
        lines = _TrialLines(progress)
        report = run_search(search, executor, model=spec, on_trial=lines, progress=lines.stage)
    print(_search_table(report))


def _executor_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--executor, --ray-address and --workers: where a batch of trials runs (read back by _executor)."""
    parser.add_argument("--executor", choices=executors.NAMES, default="local",
                        help=f"where {what}: this process, or a Ray cluster (pip install -e '.[ray]')")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default $RAY_ADDRESS, else a "
                        "local one is started)")
    parser.add_argument("--workers", type=_positive_int, help="worker processes of a local Ray cluster (default: "
                        "one per core)")


def _executor(args: argparse.Namespace) -> executors.Executor:
    """The executor --executor names (Ray: joining --ray-address, else $RAY_ADDRESS, else a local cluster)."""
    if args.executor == "local":
        if args.ray_address:
            raise PruneLabError("--ray-address is for --executor ray")
        return executors.LocalExecutor()
    return executors.get(args.executor, args.ray_address, args.workers)


class _TrialLines:
    """A search's progress: a bar per stage before the trials (sweep, solving), then one line on stderr per trial
    that lands, with the time left: the mean time of the trials run so far (the solver's refusals never ran)
    times those still to come."""

    def __init__(self, progress) -> None:
        import time

        self.clock, self.progress = time.monotonic, progress
        self.start, self.ran = self.clock(), 0

    def stage(self, stage: str, done: int, total: int) -> None:
        if stage == "done" and not self.ran:
            self.start = self.clock()  # the trials start now
        self.progress(stage, done, total)

    def __call__(self, trial: dict, finished: int, total: int) -> None:
        self.ran += trial["attempts"] > 0
        left = (self.clock() - self.start) / self.ran * (total - finished) if self.ran and finished < total else None
        what = f"accuracy {_fmt_acc(trial['accuracy'])}" if trial["status"] == "done" else \
            f"{trial['status']}: {trial['message']}"
        print(f"trial {finished}/{total} {trial['key']}: {what}"
              f"{'' if left is None else f' (about {_duration(left)} left)'}", file=sys.stderr)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _search_table(report: SearchReport) -> str:
    """Every trial (status, accuracy, costs, the fronts it is on, where it ran), then where the figures come from
    and the files written."""
    marks = {"flops": "F", "size_bytes": "S", "latency_ms": "L"}
    head = ("trial", "status", "accuracy", "FLOPs", "size (bytes)", "latency (ms)", "Pareto", "run on")
    rows = []
    for t in report.trials:
        fronts = "".join(m if t["key"] in report.pareto.get(axis, []) else "." for axis, m in marks.items())
        rows.append((t["key"], t["status"], _fmt_acc(t["accuracy"]), _count(t["flops"]), _count(t["size_bytes"]),
                     "-" if t["latency_ms"] is None else f"{t['latency_ms']:.4f}", fronts, t["where"] or "-"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if 2 <= i <= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
             strict=True))).rstrip() for r in [head, *rows]]
    done = sum(t["status"] == "done" for t in report.trials)
    lines += [f"Pareto: F = on the front of accuracy vs FLOPs, S = vs size, L = vs latency ({done} of "
              f"{len(report.trials)} trials done; search {report.status}, {report.executor} executor)",
              f"accuracy, FLOPs and size: measured where each trial ran (run on); latency: onnxruntime, batch 1, "
              f"one thread, every trial re-timed together on this machine ({DRIVER}), interleaved; baseline "
              f"{'-' if report.baseline_latency_ms is None else f'{report.baseline_latency_ms:.4f}'} ms"]
    lines += [f"{t['key']}: {t['message']}" for t in report.trials if t["status"] == "failed"]
    lines.append(f"wrote {report.folder / 'search.json'}, pareto.csv and pareto.html there; trials recorded with "
                 f"parent {report.id} (prunelab experiments list)")
    return "\n".join(lines)


def _targets(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers (the search checks them as targets)."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated names."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _fmt_acc(accuracy: float | None) -> str:
    return "n/a" if accuracy is None else f"{accuracy:.4f}"


def cmd_deploy(args: argparse.Namespace) -> None:
    """Measure every deployable form of a run folder's model; write model.int8.onnx and deploy.json."""
    folder = Path(args.run)
    spec = _replay_model(args, PruneConfig.load(folder / "config.json"), str(folder))[0] \
        if (folder / "config.json").exists() else None
    report = deploy_folder(folder, args.batch, spec)
    if args.json:
        print(json.dumps(report.rows))
        return
    print(f"{'form':36}{'bytes':>12}{'vs dense':>10}{'ms (b' + str(args.batch) + ')':>12}{'accuracy':>10}  runs")
    for r in report.rows:
        ms = f"{r['latency_ms']:.4f}" if r["latency_ms"] is not None else "-"
        print(f"{r['form']:36}{r['bytes']:>12,}{r['size_vs_dense']:>10.3f}{ms:>12}{_fmt_acc(r['accuracy']):>10}  "
              f"{r['runs_as']}")
    print(f"wrote {folder / 'model.int8.onnx'} and {folder / 'deploy.json'}")


def cmd_export(args: argparse.Namespace) -> None:
    """A run's pruned model in one format (core.workflows.export_run), written to --out. The .pt2 is rebuilt from
    the run's weights and its base model, which runs only if it is a registry model or the user names it."""
    folder = find_run(args.run)
    if args.format == "hf":
        _export_hf(args, folder)
        return
    out = check_out_file(args.out or FILE_NAMES[args.format])
    if args.format == "pt2":
        run_file(folder, "safetensors")  # an older run without weights is told so before any model loads
        spec = _replay_model(args, PruneConfig.load(folder / "config.json"), str(folder))[0]
        data = run_pt2(folder, spec.model, spec.example_input)
    else:
        data = run_file(folder, args.format).read_bytes()
    try:
        write_atomic(out, data)
    except OSError as e:
        raise PruneLabError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out}")


def _export_hf(args: argparse.Namespace, folder: Path) -> None:
    """`export --format hf`: the run as a Hugging Face folder, checked by reloading it (core.export_hf)."""
    run_file(folder, "safetensors")  # an older run without weights is told so before any model loads
    spec = _replay_model(args, PruneConfig.load(folder / "config.json"), str(folder))[0]
    source = model_folder(spec.name)  # an HF folder: its tokenizer files go along
    out = Path(args.out or FILE_NAMES["hf"])
    error = run_hf(folder, spec.model, spec.example_input, out, source)
    print(f"wrote {out}/ (from_pretrained reloads it; largest logit difference from the pruned model {error:.1e})")


def _experiment_rows(experiments: list) -> str:
    """The experiments list as a table: id, model, method, status, params, FLOPs, accuracy, created (UTC)."""
    head = ("id", "model", "method", "status", "params", "FLOPs", "accuracy", "created (UTC)")
    rows = [(e.id, e.model, e.method, e.status, _count(e.params), _count(e.flops), _fmt_acc(e.accuracy),
             e.created_at[:16].replace("T", " ")) for e in experiments]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {4, 5, 6}  # numbers align right
    cells = [[c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
             for r in [head, *rows]]
    return "\n".join("  ".join(r).rstrip() for r in cells)


def _unreadable_rows(unreadable: list) -> str:
    """Rows the store cannot read back: id, 'unreadable', the reason (delete removes one)."""
    if not unreadable:
        return ""
    lines = [f"{u.id}  unreadable ({u.status or '?'}): {u.reason}" for u in unreadable]
    return "\n".join(["", f"{len(unreadable)} record(s) cannot be read (`prunelab experiments delete ID --yes` "
                            "removes one):", *lines])


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _show(exp) -> str:
    """An experiment for people: its fields, its config and its metrics table."""
    fields = [("id", exp.id), ("model", exp.model), ("method", f"{exp.method} (criterion {exp.criterion})"),
              ("status", exp.status), ("parent", exp.parent or "-"), ("folder", exp.folder or "- (replaced by a "
              "later run)"), ("created", exp.created_at), ("finished", exp.finished_at or "-")]
    if exp.error:
        fields.append(("error", exp.error))
    lines = [f"{k:9} {v}" for k, v in fields] + ["", "config:", exp.config.to_json().rstrip(), "", "metrics:"]
    metrics = exp.metrics or {}
    if "baseline" in metrics and "pruned" in metrics:
        lines.append(_table({"baseline": metrics["baseline"], "pruned": metrics["pruned"]}))
    else:
        lines.append(json.dumps(metrics, indent=2, sort_keys=True) if metrics else f"none ({exp.status})")
    return "\n".join(lines)


def cmd_experiments(args: argparse.Namespace) -> None:
    """list / show / export / delete recorded experiments (the store is synced with the run folders first; a
    store that cannot be written is shown as last saved, with a warning)."""
    store = Store()
    if store.notice:
        _warn(store.notice)
    store.sync()
    if store.read_only:
        _warn(f"the experiment store {store.path} cannot be written ({store.read_only}): shown as last saved")
    if args.action == "list":
        found, unreadable = store.scan(model=args.model, method=args.method, status=args.status)
        if args.json:
            print(json.dumps([e.to_dict(metrics=False) for e in found] + [u.to_dict() for u in unreadable]))
        elif found or unreadable:
            print("\n".join(filter(None, (_experiment_rows(found) if found else "", _unreadable_rows(unreadable)))))
        else:
            print(f"no experiments recorded in {store.path}")
    elif args.action == "show":
        exp = store.get(args.id)
        print(json.dumps(exp.to_dict()) if args.json else _show(exp))
    elif args.action == "export":
        print("wrote " + ", ".join(str(p) for p in store.export(args.id, Path(args.out))))
    elif args.action == "delete":
        _delete(store, args)


def _delete(store, args: argparse.Namespace) -> None:
    """Delete a record (and its folder), also one that cannot be read."""
    folder = store.folder_of(args.id)
    what = "its record only" if args.keep_files or folder is None else f"its folder {folder}"
    if not args.yes:
        raise PruneLabError(f"delete removes experiment {args.id} and {what}; add --yes to confirm")
    removed = store.delete(args.id, keep_files=args.keep_files)
    print(f"deleted experiment {args.id}" + (f" and its folder {removed}" if removed else " (files kept)"))


def cmd_dashboard(args: argparse.Namespace) -> None:
    if args.model not in available():
        raise PruneLabError(f"unknown model {args.model!r}; available: {', '.join(available())}")
    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    os.environ["PRUNELAB_MODEL"] = args.model
    os.environ.setdefault("OMP_WAIT_POLICY", PASSIVE)  # the server times and prunes beside a browser: see core.jobs
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", args.address, "--server.port", str(args.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none",
            # no forced gc.collect(2) after every rerun: a page polling a job reruns every second or two, and that
            # collection kept the server at ~50% of a core, taken from the job (Python's own collection still runs)
            "--runner.postScriptGC", "false"]
    print(f"PruneLab dashboard on http://{args.address}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    os.execv(sys.executable, argv)


def _load(args: argparse.Namespace, name: str | None = None):
    """The model named on the command line (or in a config), with --weights / --trust-pickle / --data."""
    if getattr(args, "trust_pickle", False):
        print("prunelab: warning: --trust-pickle loads a pickle, which runs whatever code it carries",
              file=sys.stderr)
    data = data_reference(getattr(args, "data", None), getattr(args, "text_column", None),
                          getattr(args, "label_column", None))
    spec = load(name or args.model, weights=getattr(args, "weights", None),
                trust_pickle=getattr(args, "trust_pickle", False), data=data)
    if note := label_note(spec.split):  # label names became class indices: say which is which
        print(f"prunelab: {data}: {note}", file=sys.stderr)
    return spec


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="FILE", help="a .pt/.pth/.safetensors state dict to load into the "
                        "model (weights only: no pickled code runs)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading a whole pickled model (.pt); a pickle runs code, only use files you trust")
    parser.add_argument("--data", metavar="PATH", help="data for a Hugging Face folder or a pickled model: an .npz "
                        "(arrays x, y; optional x_train, y_train), a .csv/.jsonl with text and label columns, a "
                        "datasets folder (save_to_disk) or an image folder (a sub-folder per class)")
    parser.add_argument("--text-column", metavar="NAME", help="the text column of --data (default: text or sentence)")
    parser.add_argument("--label-column", metavar="NAME", help="the label column of --data (default: label)")


def _replay_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="MODEL", help="the base model to replay onto, when the config names a "
                        "file or folder: file.py:build, a pickled model or a Hugging Face folder (your choice runs)")
    parser.add_argument("--trust-code", action="store_true", help="load the model file or folder the config "
                        "names, running its code (only for configs whose source you trust)")


def build_parser() -> Parser:
    p = Parser(prog="prunelab", description="Explore neural-network pruning trade-offs, measured.")
    p.add_argument("--home", metavar="DIR", help="workspace for runs, caches and the experiment store "
                   "(sets PRUNELAB_HOME; default $PRUNELAB_HOME or ~/.prunelab)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    b = sub.add_parser("baseline", help="measure the unpruned model")
    b.add_argument("model")
    b.add_argument("--json", action="store_true", help="print one JSON object")

    ly = sub.add_parser("layers", help="list the prunable layers / channel groups (the keys of a config)")
    ly.add_argument("model")
    ly.add_argument("--method", choices=methods.names(), default=defaults.METHOD)
    ly.add_argument("--json", action="store_true")

    pr = sub.add_parser("prune", help="prune a model, fine-tune, export and measure")
    pr.add_argument("model")
    pr.add_argument("--method", choices=methods.names())
    group = pr.add_mutually_exclusive_group()
    group.add_argument("--ratio", type=_ratio, help="fraction removed, 0 <= R < 1: of each layer's weights, of each "
                       "channel group, hidden-unit group or attention module's heads, or of the removable blocks")
    group.add_argument("--config", help="per-layer ratios from a JSON {layer: ratio} or a PruneLab config (only its "
                       "ratios and method are used; `prunelab apply` replays a whole config)")
    pr.add_argument("--criterion", choices=list(CRITERIA), default=defaults.CRITERION,
                    help="what ranks weights/channels for removal (docs/user-guide.md lists them)")
    pr.add_argument("--scope", choices=["layer", "global"], default="layer",
                    help="unstructured: R of every layer, or one threshold across layers (total R)")
    pattern, schedule, finetune = defaults.PATTERN, defaults.SCHEDULE, defaults.FINETUNE
    pr.add_argument("--nm", type=_nm, default=(pattern.n, pattern.m), metavar="N:M",
                    help=f"nm method: keep N of every M ({pattern.n}:{pattern.m})")
    pr.add_argument("--block", type=_block, default=pattern.block, metavar="RxC",
                    help="block method: block shape ({}x{})".format(*pattern.block))
    pr.add_argument("--repair", choices=["none", *methods.repairs()], default="none",
                    help="post-training repair from calibration data: masks — sparsegpt (chooses its own masks) or "
                    "lstsq (exact, for the criterion's masks); channels, neurons, heads — lstsq (refit the layers "
                    "whose inputs were cut to the unpruned outputs) or bias (keep their output means)")
    pr.add_argument("--quantize", choices=list(QUANTIZE), default="none",
                    help="after pruning and fine-tuning: int8 quantises the ONNX model (onnxruntime static, "
                    "calibrated on training inputs) and measures it, written as model.int8.onnx")
    pr.add_argument("--calibration-samples", type=_positive_int, default=PruneConfig.calibration_samples,
                    help="training examples that criteria, repair and BatchNorm re-estimation look at")
    pr.add_argument("--rank", choices=["cosine", "sensitivity"], default="cosine",
                    help="layer method: rank blocks by how little they change their input, or by accuracy lost")
    pr.add_argument("--schedule", choices=["oneshot", "iterative", "dynamic"], default=schedule.kind)
    pr.add_argument("--steps", type=_positive_int, default=schedule.steps, help="iterative: prune/fine-tune rounds")
    pr.add_argument("--curve", choices=["cubic", "linear"], default=schedule.curve,
                    help="iterative/dynamic ratio curve")
    pr.add_argument("--update-every", type=_positive_int, default=schedule.update_every,
                    help="dynamic: optimiser steps per mask update")
    low, high = LIMITS["last_round"]
    pr.add_argument("--last-round", type=float, default=schedule.last_round, metavar="SHARE",
                    help=f"iterative: share of the fine-tuning budget spent after the last cut, the rest split evenly "
                    f"between the earlier rounds ({low}..{high}; default: an equal share per round)")
    pr.add_argument("--finetune-epochs", type=int, default=finetune.epochs,
                    help="the schedule's whole fine-tuning budget in epochs (0 = none)")
    pr.add_argument("--distill", action="store_true", help="distil from the unpruned model while fine-tuning")
    pr.add_argument("--temperature", type=float, default=finetune.temperature, help="distillation temperature")
    pr.add_argument("--alpha", type=float, default=finetune.alpha, help="weight of the distillation loss (0..1)")
    pr.add_argument("--rewind", action="store_true",
                    help="lottery ticket: reset surviving weights to their initial values, then train (masks only)")
    pr.add_argument("--lr", type=float, help="peak fine-tuning learning rate (default: chosen from the model)")
    pr.add_argument("--optimizer", choices=recipes.OPTIMIZERS,
                    help="fine-tuning optimiser (default: chosen from the model)")
    pr.add_argument("--batch-size", type=_positive_int, help="fine-tuning batch size (default: chosen from the model)")
    pr.add_argument("--seed", type=int, default=defaults.SEED)
    pr.add_argument("--hf-compatible", action="store_true", help="Hugging Face models: only cuts the model's "
                    "config can describe (the layers' own units, uniform per layer), so `export --format hf` works")
    pr.add_argument("--out", required=True,
                    help="directory for config.json, model.onnx, model.safetensors, metrics.json")
    pr.add_argument("--force", action="store_true", help="if --out holds an earlier run, move it (and its "
                    "record) aside to OUT.replaced-<its id> instead of refusing")

    ap = sub.add_parser("apply", help="replay a config onto its base model")
    ap.add_argument("config")
    ap.add_argument("--finetune-epochs", type=int, help="override the config's fine-tuning epochs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true", help="if --out holds an earlier run, move it (and its "
                    "record) aside to OUT.replaced-<its id> instead of refusing")

    se = sub.add_parser("sensitivity", help="prune one layer/group at a time over a ratio grid; write a CSV")
    se.add_argument("model")
    se.add_argument("--criterion", choices=list(CRITERIA), default=defaults.SWEEP_CRITERION)
    se.add_argument("--granularity", choices=[n for n, m in methods.REGISTRY.items() if m.swept],
                    default=defaults.METHOD)
    se.add_argument("--grid", type=_grid, default=defaults.SWEEP_GRID,
                    help="comma-separated ratios (default " + ",".join(map(str, defaults.SWEEP_GRID)) + ")")
    se.add_argument("--eval-samples", type=_positive_int, default=defaults.SWEEP_EVAL_SAMPLES,
                    help="training images (not used for calibration) each point is evaluated on")
    se.add_argument("--calibration-samples", type=_positive_int, default=defaults.SWEEP_CALIBRATION_SAMPLES)
    se.add_argument("--seed", type=int, default=defaults.SWEEP_SEED)
    se.add_argument("--no-cache", action="store_true", help="measure again even if this sweep is cached")
    _executor_arguments(se, "the units are measured")
    se.add_argument("--out", required=True, help="CSV file to write")

    al = sub.add_parser("allocate", help="choose per-layer ratios for a budget; write a config")
    al.add_argument("model")
    al.add_argument("--hf-compatible", action="store_true", help="Hugging Face models: one ratio for every layer "
                    "(uniform strategy), the layers' own units only, so `export --format hf` works")
    al.add_argument("--sensitivity", help="CSV written by `prunelab sensitivity` (needed by the sensitivity "
                    "strategy; it also fixes method and criterion)")
    solver = {f.name: defaults.default(SolveRequest, f.name) for f in dataclasses.fields(SolveRequest)
              if f.name not in ("target", "table", "locked")}  # the Tune page's solver starts from these too
    al.add_argument("--method", choices=[n for n, m in methods.REGISTRY.items() if m.solved], default=solver["method"],
                    help="without --sensitivity: what the ratios prune")
    al.add_argument("--criterion", choices=list(CRITERIA), default=solver["criterion"],
                    help="without --sensitivity: what ranks channels/weights")
    tg = al.add_mutually_exclusive_group(required=True)
    tg.add_argument("--target-flops", type=float, help="F: F times fewer FLOPs")
    tg.add_argument("--target-params", type=float, help="F: F times fewer parameters")
    tg.add_argument("--target-size-mb", type=float, help="fp32 size at most S MB")
    tg.add_argument("--target-latency-ms", type=float,
                    help="onnxruntime latency at --latency-batch at most T ms (an estimate, measured after applying)")
    tg.add_argument("--target-speedup", type=float, help="X: X times faster than the baseline (estimate)")
    al.add_argument("--hardware-aware", action="store_true",
                    help="keep widths the runtime is fast at (a measured table); pick the alignment by timing")
    al.add_argument("--latency-batch", type=_positive_int, default=solver["latency_batch"],
                    help="batch size latency refers to")
    al.add_argument("--strategy", choices=list(STRATEGIES), default=solver["strategy"])
    al.add_argument("--min-ratio", type=_ratio, default=solver["min_ratio"])
    al.add_argument("--max-ratio", type=_ratio, default=solver["max_ratio"])
    al.add_argument("--lock", type=_lock, action="append", metavar="UNIT=RATIO", help="hold a unit at a ratio")
    al.add_argument("--calibration-samples", type=_positive_int, default=solver["calibration_samples"])
    al.add_argument("--seed", type=int, default=solver["seed"])
    al.add_argument("--out", required=True, help="config.json to write")

    sr = sub.add_parser("search", help="the grid of allocate -> apply trials (targets x strategies x seeds), "
                        "recorded, with the Pareto fronts of accuracy against FLOPs, size and latency")
    sr.add_argument("model", help="a registry model or your own (file.py:function, a Hugging Face folder): "
                    "each trial loads it by this reference, also on a Ray worker")
    sr.add_argument("--targets", type=_targets, default=(1.5, 2.0, 3.0, 4.0), metavar="T1,T2",
                    help="budget targets of --target-kind (default 1.5,2,3,4: FLOPs reduction factors, 2 = half)")
    sr.add_argument("--target-kind", choices=TARGETS, default="flops", help="what the targets are (as allocate's "
                    "--target-*: flops/params/speedup factors, size_mb, latency_ms)")
    sr.add_argument("--strategies", type=_names, default=STRATEGIES, metavar="S1,S2",
                    help="solver strategies (default " + ",".join(STRATEGIES) + ")")
    sr.add_argument("--hardware-aware", action="store_true", help="solve for widths the runtime is fast at")
    sr.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0..N-1 per target and strategy")
    sr.add_argument("--finetune-epochs", type=int, default=defaults.PAGE_FINETUNE_EPOCHS)
    sr.add_argument("--method", choices=[n for n, m in methods.REGISTRY.items() if m.solved], default=defaults.METHOD)
    sr.add_argument("--criterion", choices=list(CRITERIA), default=defaults.CRITERION)
    _executor_arguments(sr, "trials run")

    dp = sub.add_parser("deploy", help="size, latency and accuracy of every deployable form of a run (incl. int8)")
    dp.add_argument("run", help="a folder written by prunelab prune/apply")
    dp.add_argument("--batch", type=_positive_int, default=1)
    dp.add_argument("--json", action="store_true")

    for s_ in (b, ly, pr, ap, se, al, dp):
        _model_options(s_)
    xp = sub.add_parser("export", help="a run's pruned model as ONNX, a torch.export program (.pt2), its "
                        "weights (.safetensors) or a Hugging Face folder (hf)")
    xp.add_argument("run", help="a run folder, or a recorded run's id (see: prunelab experiments list)")
    xp.add_argument("--format", choices=FORMATS, required=True)
    xp.add_argument("--out", metavar="PATH", help="the file to write (default: model.<format> here; for hf a new "
                    "folder, default model-hf)")

    _model_options(xp)  # an HF folder or pickled model loads with its data, as for every other command
    for s_ in (ap, dp, xp):
        _replay_options(s_)

    _experiments_parser(sub)

    d = sub.add_parser("dashboard", help="launch the web dashboard")
    d.add_argument("--model", default="mnist-resnet")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--address", default="127.0.0.1", help="bind address (default: this machine only)")

    for s in (b, pr, ap):
        s.add_argument("--threads", type=_positive_int, default=1, help="onnxruntime threads for latency (default 1)")
        s.add_argument("--latency-batches", type=_batches, default=None, metavar="B1,B2",
                       help="batch sizes latency is measured at (default 1,32; 1 for the 224x224 zoo)")
    return p


def _experiments_parser(sub) -> None:
    ex = sub.add_parser("experiments", help="recorded runs: list, show, export, delete")
    actions = ex.add_subparsers(dest="action", required=True, parser_class=Parser,
                                metavar="{list,show,export,delete}")
    ls = actions.add_parser("list", help="every recorded run, newest first")
    ls.add_argument("--model")
    ls.add_argument("--method", choices=methods.names())
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--json", action="store_true", help="print one JSON list (without metrics)")
    sh = actions.add_parser("show", help="one run's config and metrics")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")
    exp = actions.add_parser("export", help="copy a run's config.json, model.onnx, model.safetensors and metrics.json")
    exp.add_argument("id")
    exp.add_argument("--out", required=True, help="directory to copy into (not inside the workspace's runs)")
    de = actions.add_parser("delete", help="remove a run's record and its folder under the workspace")
    de.add_argument("id")
    de.add_argument("--yes", action="store_true", help="really delete")
    de.add_argument("--keep-files", action="store_true", help="forget the record, leave the folder")


COMMANDS = {"baseline": cmd_baseline, "layers": cmd_layers, "prune": cmd_prune, "apply": cmd_apply,
            "sensitivity": cmd_sensitivity, "allocate": cmd_allocate, "search": cmd_search, "deploy": cmd_deploy,
            "export": cmd_export, "experiments": cmd_experiments, "dashboard": cmd_dashboard}


@contextlib.contextmanager
def _home(home: str | None):
    """--home DIR: PRUNELAB_HOME for this command (and the processes it starts); restored afterwards, so
    main() called in-process leaves the environment as it found it."""
    if home is None:
        yield
        return
    path = Path(home).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise PruneLabError(f"--home {home} exists and is not a directory")
    before = os.environ.get("PRUNELAB_HOME")
    os.environ["PRUNELAB_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PRUNELAB_HOME", None)
        else:
            os.environ["PRUNELAB_HOME"] = before


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with _home(args.home):
            COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at interpreter exit
    except PruneLabError as e:
        print(f"prunelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunelab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`prunelab ... | head`): nothing more to say
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    except Exception as e:  # a bug, not a user error: one line unless asked for more
        if os.environ.get("PRUNELAB_DEBUG"):
            traceback.print_exc()
        print(f"prunelab: internal error: {type(e).__name__}: {e} (PRUNELAB_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

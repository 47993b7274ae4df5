"""Sensitivity analysis: prune one layer (unstructured) or one coupled channel group (channel) at a
time over a ratio grid, and measure accuracy and loss (and a language model's perplexity, with its increase:
the figure the solver and the heatmap use for it, lower being better). Results are tidy rows, cached on disk.

Nothing is deep-copied per grid point: one working copy is masked, evaluated and restored.
- unstructured: the layer's lowest-scoring weights are zeroed, as the pruner would mask them.
- channel: the group's lowest-scoring channels are zeroed in every coupled tensor (producing layers'
  outputs and biases, norm scales and shifts, consumers' inputs), which cuts them out of the network's
  function as removing them would; then BatchNorm statistics are re-estimated, as after a real cut.
  A LayerNorm over a masked stream is made to normalise over the kept channels only (a forward hook),
  and attention's 1/sqrt(head width) score scale is corrected for narrower heads by scaling the query
  projection, so the figures equal those of a physically pruned copy (a test checks it per model).

Evaluation uses training images that the calibration step did not use, so the test set stays
untouched for the final measurement of whatever configuration the sweep helps choose.

A sweep runs on an executor (core.executors). The local one (the default) measures every unit in one trial in
this process, reporting each grid point as it goes. Any other (Ray) gets one trial per unit: sweep_part, a
module-level function of a SweepPart (the SweepSpec, the unit's name and a handle to the ModelSpec, which the
executor sends to its workers once: the model object with its weights and data, pickled; for a model from the
user's own file, that file's code goes with it). Each trial sets up what the unit needs (scores, the coupling
graph, the base figures) on the same inputs, so its rows equal the local ones; the driver merges them in the
local order and caches the table under the same key, whichever executor measured it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from core import methods
from core.config import check_int
from core.data import seeded_order
from core.errors import PruneLabError
from core.estimate import build_cost_model
from core.evaluate import evaluate
from core.executors import Executor, LocalExecutor, Shared
from core.files import cache_writable, write_cache
from core.finetune import recalibrate_batchnorm
from core.graph import channel_groups, dependency_graph, kept_channels
from core.importance import Calibration, channel_scores, weight_scores
from core.metric_keys import PERPLEXITY_METRIC
from core.prune.unstructured import mask_from_scores
from core.spec import ModelSpec, require_data
from core.structure import query_projections
from core.workspace import safe_name, workspace

SWEEP_VERSION = 1  # bump when the way figures are computed changes: old cache entries stop matching
DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))
COLUMNS = ["model", "granularity", "criterion", "unit", "ratio", "accuracy", "loss", "accuracy_drop",
           "loss_increase", "params_removed", "flops_removed", "base_accuracy", "base_loss"]
# a language model's sweep adds these (core.evaluate gives it a perplexity); other tables do not have them
PERPLEXITY_COLUMNS = [PERPLEXITY_METRIC.key, PERPLEXITY_METRIC.change_name, f"base_{PERPLEXITY_METRIC.key}"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepSpec:
    """Everything that determines a sweep's figures; its hash is the cache key."""

    model: str
    fingerprint: str
    granularity: str
    criterion: str = "l1"
    grid: tuple[float, ...] = DEFAULT_GRID
    eval_samples: int = 1000
    calibration_samples: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(sorted(set(self.grid))))  # one column per ratio, ascending
        swept = [n for n, m in methods.REGISTRY.items() if m.swept]  # the methods a sweep has a runner for
        if self.granularity not in swept:
            raise PruneLabError(f"granularity must be {' or '.join(swept)}, got {self.granularity!r}")
        if not self.grid or any(not 0 < r < 1 for r in self.grid):
            raise PruneLabError(f"sensitivity ratios must lie strictly between 0 and 1, got {list(self.grid)}")
        for name in ("eval_samples", "calibration_samples", "seed"):
            check_int(name, getattr(self, name))

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": SWEEP_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(sweep: SweepSpec) -> Path:
    # the key hashes the model name too; the readable prefix is made safe (a user model's name is a path)
    name = f"{safe_name(sweep.model)}-{sweep.granularity}-{sweep.key()}.csv"
    return workspace(create=False) / "cache" / "sensitivity" / name


def subsets(spec: ModelSpec, sweep: SweepSpec) -> tuple[Calibration, torch.Tensor, torch.Tensor]:
    """Calibration images (the same ones core.prune.calibration picks) and disjoint evaluation images,
    both from the training split."""
    split = require_data(spec, "a sensitivity sweep")
    order = seeded_order(len(split.train_x), sweep.seed)  # calibration first, as core.prune picks it
    cal, rest = order[: sweep.calibration_samples], order[sweep.calibration_samples:]
    ev = rest[: sweep.eval_samples]
    if len(ev) == 0:
        raise PruneLabError("no training images left for evaluation after the calibration subset")
    x, y = split.train_x, split.train_y
    return Calibration(x[cal], y[cal]), x[ev], y[ev]


def sweep(spec: ModelSpec, sweep_spec: SweepSpec, progress: Progress | None = None,
          use_cache: bool = True, executor: Executor | None = None) -> pd.DataFrame:
    """The sensitivity table of spec.model: one row per (unit, ratio). Cached on disk by SweepSpec (whichever
    executor measures it; the local one by default)."""
    _check_model(spec, sweep_spec)
    path = cache_path(sweep_spec)
    if use_cache and path.exists():
        try:
            return read_table(path)
        except PruneLabError:
            pass  # a damaged cache entry is measured again (and replaced)
    keep = cache_writable(path)  # a workspace that cannot take the cache is said before the sweep, not after
    subsets(spec, sweep_spec)  # too little data is said here, before any trial starts
    rows = _measure(spec, sweep_spec, executor or LocalExecutor(), progress or (lambda done, total: None))
    table = pd.DataFrame(rows, columns=COLUMNS + [c for c in PERPLEXITY_COLUMNS if rows and c in rows[0]])
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    if keep:
        write_cache(path, buf.getvalue().encode())  # best-effort: the table is returned either way
    return table


def _check_model(spec: ModelSpec, sweep_spec: SweepSpec) -> None:
    if (sweep_spec.model, sweep_spec.fingerprint) != (spec.name, spec.fingerprint):
        raise PruneLabError("the sweep was specified for another model or other weights")


@dataclass(frozen=True)
class SweepPart:
    """One trial of a sweep: the rows of `units` (None: every unit), measured on the ModelSpec `spec` holds."""

    sweep: SweepSpec
    spec: Shared
    units: tuple[str, ...] | None = None


def sweep_part(part: SweepPart, progress: Progress | None = None) -> list[dict]:
    """The rows of part's units, in the local order (runs wherever the executor puts it)."""
    spec = part.spec.get()
    _check_model(spec, part.sweep)
    calib, ex, ey = subsets(spec, part.sweep)
    # masks are swept layer by layer on weight scores, structural methods group by group
    runner = _unstructured_rows if methods.get(part.sweep.granularity).mask else _channel_rows
    return runner(spec, part.sweep, calib, ex, ey, progress or (lambda done, total: None), part.units)


def units(spec: ModelSpec, sweep_spec: SweepSpec) -> list[str]:
    """The units a sweep measures, in the order of its table (what the row functions iterate over)."""
    if methods.get(sweep_spec.granularity).mask:
        return list(weight_scores(spec.model, sweep_spec.criterion, subsets(spec, sweep_spec)[0], sweep_spec.seed))
    return [unit.name for unit, _ in channel_groups(_traceable_copy(spec.model), spec.example_input)]


def _traceable_copy(model: nn.Module) -> nn.Module:
    """A working copy in eval mode whose parameters require gradients (Torch-Pruning traces through autograd)."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _measure(spec: ModelSpec, sweep_spec: SweepSpec, executor: Executor, progress: Progress) -> list[dict]:
    """Every row, through the executor: one trial here for the local executor, one per unit elsewhere."""
    shared = executor.share(spec)
    if executor.name == LocalExecutor.name:  # in this process: every grid point reported as it is measured
        whole = SweepPart(sweep_spec, shared)
        outcomes = executor.run(functools.partial(sweep_part, progress=progress), [("all", whole)])
    else:
        names, points = units(spec, sweep_spec), len(sweep_spec.grid)
        outcomes = executor.run(sweep_part, [(n, SweepPart(sweep_spec, shared, (n,))) for n in names],
                                on_done=lambda _, done, total: progress(done * points, total * points))
    for outcome in outcomes:
        if outcome.cancelled:
            raise PruneLabError("the sweep was cancelled")
        if outcome.error is not None:
            raise PruneLabError(outcome.error)
    return [row for outcome in outcomes for row in outcome.value]


MAX_TABLE_BYTES = 64 * 2**20  # a ResNet-50 sweep (53 groups x 9 ratios) is ~100 kB; far more is not a sweep


def _check_table_file(path: Path) -> None:
    """A sensitivity CSV must be a regular file of sane size, checked before pandas reads it (a device such as
    /dev/zero would be read until memory runs out)."""
    if path.exists() and not path.is_file():
        raise PruneLabError(f"cannot read sensitivity table {path}: not a regular file")
    if path.is_file() and path.stat().st_size > MAX_TABLE_BYTES:
        raise PruneLabError(f"sensitivity table {path} is too large ({path.stat().st_size:,} bytes; at most "
                            f"{MAX_TABLE_BYTES:,})")


def read_table(path: str | Path, model: str | None = None) -> pd.DataFrame:
    """A sensitivity CSV written by sweep(); checks its columns (and, if given, that it is for model)."""
    text_columns = {"model": str, "granularity": str, "criterion": str, "unit": str}  # "0" stays a name
    _check_table_file(Path(path))
    try:
        table = pd.read_csv(path, dtype=text_columns)
    except (OSError, ValueError) as e:
        raise PruneLabError(f"cannot read sensitivity table {path}: {e}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise PruneLabError(f"{path} is not a PruneLab sensitivity table (missing: {', '.join(missing) or 'rows'})")
    measured = [c for c in COLUMNS + PERPLEXITY_COLUMNS if c in table.columns and c not in text_columns]
    numbers = table[measured].apply(pd.to_numeric, errors="coerce")
    if numbers.isna().any().any() or table[list(text_columns)].isna().any().any():
        raise PruneLabError(f"{path} has empty or non-numeric cells (truncated or edited?)")
    if not numbers.map(math.isfinite).all().all():
        raise PruneLabError(f"{path} has infinite figures")
    table[numbers.columns] = numbers
    models = set(table["model"])
    if model is not None and models != {model}:
        raise PruneLabError(f"{path} is a sensitivity table for {', '.join(sorted(models))}, not {model}")
    if len(set(table["granularity"])) != 1 or len(set(table["criterion"])) != 1:
        raise PruneLabError(f"{path} mixes granularities or criteria")
    return table


def _row(sweep_spec: SweepSpec, unit: str, ratio: float, result: dict, base: dict, cost: dict,
         base_cost: dict) -> dict:
    return {**_core_row(sweep_spec, unit, ratio, result, base, cost, base_cost), **_perplexity_cells(result, base)}


def _perplexity_cells(result: dict, base: dict) -> dict:
    """A language model's perplexity, its increase over the unpruned model's, and that base (else nothing)."""
    key = PERPLEXITY_METRIC.key
    if key not in result:
        return {}
    return dict(zip(PERPLEXITY_COLUMNS, (result[key], PERPLEXITY_METRIC.worsening(base[key], result[key]), base[key]),
                    strict=True))


def _core_row(sweep_spec: SweepSpec, unit: str, ratio: float, result: dict, base: dict, cost: dict,
              base_cost: dict) -> dict:
    return {
        "model": sweep_spec.model, "granularity": sweep_spec.granularity, "criterion": sweep_spec.criterion,
        "unit": unit, "ratio": ratio, "accuracy": result["accuracy"], "loss": result["loss"],
        "accuracy_drop": base["accuracy"] - result["accuracy"], "loss_increase": result["loss"] - base["loss"],
        "params_removed": base_cost["params"] - cost["params"] if cost["params"] != base_cost["params"]
        else base_cost["nonzero_params"] - cost["nonzero_params"],
        "flops_removed": base_cost["flops"] - cost["flops"] if cost["flops"] != base_cost["flops"]
        else base_cost["sparse_flops"] - cost["sparse_flops"],
        "base_accuracy": base["accuracy"], "base_loss": base["loss"],
    }


@torch.no_grad()
def _unstructured_rows(spec, sweep_spec, calib, ex, ey, progress, only: tuple[str, ...] | None = None) -> list[dict]:
    model = copy.deepcopy(spec.model).eval()
    scores = weight_scores(spec.model, sweep_spec.criterion, calib, sweep_spec.seed)
    scores = {n: s for n, s in scores.items() if only is None or n in only}
    cost_model = build_cost_model(spec.model, spec.example_input, "unstructured")
    base, base_cost = evaluate(model, ex, ey), cost_model.estimate({})
    modules = dict(model.named_modules())
    total, done, rows = len(scores) * len(sweep_spec.grid), 0, []
    for name, score in scores.items():
        weight = modules[name].weight
        original = weight.detach().clone()
        for ratio in sweep_spec.grid:
            weight.copy_(original * mask_from_scores(score, ratio))
            result = evaluate(model, ex, ey)
            rows.append(_row(sweep_spec, name, ratio, result, base, cost_model.estimate({name: ratio}), base_cost))
            done += 1
            progress(done, total)
        weight.copy_(original)
    return rows


def _removed_channels(score: torch.Tensor, unit, ratio: float) -> list[int]:
    """The channel indices the pruner would cut at ratio: lowest scores, the same count in every head."""
    per_head = unit.size // unit.heads
    n = per_head - kept_channels(unit, ratio) // unit.heads
    head_score = score.view(unit.heads, per_head).mean(0)  # as Torch-Pruning averages grouped channels
    chosen = torch.topk(head_score, n, largest=False).indices
    return sorted(int(c) + h * per_head for h in range(unit.heads) for c in chosen)


def _layer_norm_without(module: nn.LayerNorm, removed: list[int]):
    """A forward hook making a LayerNorm normalise over its kept channels only, as it would once the
    removed ones were cut out (the removed channels' outputs stay zero). A channels-first LayerNorm (ConvNeXt's,
    `data_format="channels_first"`: (batch, channels, h, w)) normalises along dimension 1 instead of the last."""
    keep = torch.tensor(sorted(set(range(module.normalized_shape[-1])) - set(removed)))
    axis = 1 if getattr(module, "data_format", None) == "channels_first" else -1

    def hook(mod: nn.LayerNorm, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0].movedim(axis, -1).index_select(-1, keep)
        w = mod.weight.index_select(0, keep) if mod.weight is not None else None
        b = mod.bias.index_select(0, keep) if mod.bias is not None else None
        out = torch.zeros_like(output.movedim(axis, -1))
        out[..., keep] = torch.nn.functional.layer_norm(x, (len(keep),), w, b, mod.eps)
        return out.movedim(-1, axis)

    return module.register_forward_hook(hook)


def _is_rms_norm(module: nn.Module) -> bool:
    """torch's nn.RMSNorm or a look-alike (Llama's LlamaRMSNorm, T5's T5LayerNorm-style *RMSNorm classes)."""
    return isinstance(module, nn.RMSNorm) or type(module).__name__.endswith("RMSNorm")


def _rms_norm_without(module: nn.Module, removed: list[int]):
    """A forward hook making an RMSNorm scale by the root mean square of its kept channels only, as it would once
    the removed ones were cut out (the removed channels' outputs stay zero)."""
    keep = torch.tensor(sorted(set(range(module.weight.shape[-1])) - set(removed)))
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or 1e-6

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0].index_select(-1, keep).float()
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        out = torch.zeros_like(output)
        out[..., keep] = (mod.weight.index_select(0, keep) * normed.to(output.dtype)).to(output.dtype)
        return out

    return module.register_forward_hook(hook)


def _zero(graph, dep, idxs: list[int], rms_norms: dict[int, nn.Module]):
    """Zero one coupled tensor slice so the channel stops carrying anything (see module docstring);
    returns a hook handle to remove afterwards, if one was needed. rms_norms maps id(weight) -> RMSNorm module:
    Torch-Pruning sees an RMSNorm it has no pruner for as its bare weight, but the norm's scale depends on its
    channels, so it gets a hook like LayerNorm's."""
    target, out = dep.target.module, graph.is_out_channel_pruning_fn(dep.handler)
    if id(target) in rms_norms:
        return _rms_norm_without(rms_norms[id(target)], idxs)
    if isinstance(target, nn.LayerNorm) and target.weight is not None:
        return _layer_norm_without(target, idxs)
    if _is_rms_norm(target) and isinstance(getattr(target, "weight", None), torch.Tensor):
        return _rms_norm_without(target, idxs)
    if isinstance(target, nn.Parameter):
        target.data[..., idxs] = 0  # Torch-Pruning cuts bare parameters along their last dimension
    elif isinstance(target, (nn.Conv2d, nn.Linear)):
        depthwise = isinstance(target, nn.Conv2d) and target.groups == target.in_channels > 1
        if out or depthwise:
            target.weight.data[idxs] = 0
            if target.bias is not None:
                target.bias.data[idxs] = 0
        else:
            target.weight.data[:, idxs] = 0
    elif isinstance(target, nn.modules.batchnorm._BatchNorm) and target.weight is not None:
        target.weight.data[idxs] = 0
        target.bias.data[idxs] = 0
    return None


def _rescale_attention(model: nn.Module, unit, removed: list[int], queries: set[nn.Module]) -> None:
    """Attention scales its scores by 1/sqrt(head width); after a cut the width is the kept one. Scaling
    the query projection's kept outputs by sqrt(width / kept) gives the masked model the same scores."""
    modules = dict(model.named_modules())
    per_head = unit.size // unit.heads
    kept = per_head - len(removed) // unit.heads
    query = next(modules[m.name] for m in unit.members if m.side == "out" and modules.get(m.name) in queries)
    keep = sorted(set(range(unit.size)) - set(removed))
    factor = (per_head / kept) ** 0.5
    query.weight.data[keep] *= factor
    if query.bias is not None:
        query.bias.data[keep] *= factor


def _channel_rows(spec, sweep_spec, calib, ex, ey, progress, only: tuple[str, ...] | None = None) -> list[dict]:
    model = _traceable_copy(spec.model)
    scores = channel_scores(spec.model, spec.example_input, sweep_spec.criterion, calib, sweep_spec.seed)
    graph = dependency_graph(model, spec.example_input)
    queries = query_projections(model)
    pairs = [(u, g) for u, g in channel_groups(model, spec.example_input, graph) if only is None or u.name in only]
    cost_model = build_cost_model(spec.model, spec.example_input, "channel")
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}  # restored after every point
    with torch.no_grad():
        base, base_cost = evaluate(model, ex, ey), cost_model.estimate({})
    modules = dict(model.named_modules())
    rms_norms = {id(m.weight): m for m in modules.values() if _is_rms_norm(m) and hasattr(m, "weight")}
    total, done, rows = len(pairs) * len(sweep_spec.grid), 0, []
    for unit, _ in pairs:
        root = modules[unit.name]
        for ratio in sweep_spec.grid:
            idxs = _removed_channels(scores[unit.name], unit, ratio)
            with torch.no_grad():
                cut = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs)
                hooks = [_zero(graph, dep, [getattr(i, "idx", i) for i in dep_idxs], rms_norms)
                         for dep, dep_idxs in cut]
                if unit.heads > 1:
                    _rescale_attention(model, unit, idxs, queries)
                recalibrate_batchnorm(model, calib.x)
                result = evaluate(model, ex, ey)
                for h in hooks:
                    if h is not None:
                        h.remove()
                model.load_state_dict(snapshot)
            rows.append(_row(sweep_spec, unit.name, ratio, result, base, cost_model.estimate({unit.name: ratio}),
                             base_cost))
            done += 1
            progress(done, total)
    return rows

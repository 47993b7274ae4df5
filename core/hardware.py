"""Hardware-aware widths: how long each prunable unit's layers take, measured in onnxruntime on this CPU,
as a function of the unit's kept width — a lookup table built once per model and cached on disk.

Each Conv2d/Linear a unit touches (its outputs or its inputs) is timed as a one-layer ONNX model at every
candidate width (the other dimension and the spatial size as in the real model), in interleaved rounds.
On this machine's AVX-512 CPU the runtime works in blocks of 16 channels, so latency is a staircase:
15 channels cost as much as 16, 17 as much as 32. "Fast" widths are the top of each stair — no wider
width is as fast — and `round_to` is their greatest common divisor, read from measurement.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from core.data import id_bound
from core.export import export_onnx
from core.files import write_cache
from core.graph import Unit
from core.latency import measure_interleaved
from core.metric_keys import LATENCY_DECIMALS
from core.prune.channel import apply_channel
from core.workspace import safe_name, workspace

TOLERANCE = 0.01  # time differences below 1% of a unit's largest time are timer noise
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LayerShape:
    """What a one-layer benchmark needs: kind, widths, kernel, and the input size it sees in the model."""

    kind: str  # "conv" or "linear"
    cin: int
    cout: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    depthwise: bool = False
    spatial: tuple[int, ...] = ()  # conv: (H, W); linear: the dims between batch and features (tokens)


def layer_shapes(model: nn.Module, example_input: torch.Tensor) -> dict[str, LayerShape]:
    """Shapes of every Conv2d/Linear, with the input sizes seen during one forward pass."""
    shapes, handles = {}, []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, _out) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                shapes[name] = LayerShape("conv", module.in_channels, module.out_channels, tuple(module.kernel_size),
                                          tuple(module.stride), tuple(module.padding),
                                          1 < module.groups == module.in_channels, tuple(x.shape[2:]))
            else:
                shapes[name] = LayerShape("linear", module.in_features, module.out_features,
                                          spatial=tuple(x.shape[1:-1]))
        return record

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in handles:
            h.remove()
    return shapes


def layer_onnx(shape: LayerShape, cin: int, cout: int) -> bytes:
    """A one-layer ONNX model (conv + ReLU, or matmul + add) with the given widths."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if shape.kind == "conv":
        groups = cin if shape.depthwise else 1
        weight = rng.standard_normal((cout, cin // groups, *shape.kernel)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=groups, strides=list(shape.stride),
                                  pads=[*shape.padding, *shape.padding], kernel_shape=list(shape.kernel)),
                 helper.make_node("Relu", ["c"], ["y"])]
        dims = ["N", cin, *shape.spatial]
    else:
        weight = rng.standard_normal((cin, cout)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
        dims = ["N", *shape.spatial, cin]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


MAX_CANDIDATES = 48  # per unit: keeps a ResNet-50 table to minutes, not hours


def candidate_widths(unit: Unit) -> list[int]:
    """Widths measured for a unit: every width up to 64 channels; above, a power-of-two step (at least 4)
    that keeps at most MAX_CANDIDATES widths — 4 up to 192 channels, 16 at 512, 64 at 2048 (on this
    CPU's 16-channel blocks those coarse widths are all fast ones). Always multiples of the head count
    (attention) and always the full width."""
    step = 1 if unit.size <= 64 else max(4, 1 << math.ceil(math.log2(unit.size / MAX_CANDIDATES)))
    step = math.lcm(step, unit.heads)
    return sorted({*range(step, unit.size + 1, step), unit.size})


@dataclass(frozen=True)
class LatencyTable:
    """Per unit: the measured time (ms per forward at `batch`) of the layers it touches, per kept width."""

    batch: int
    threads: int
    runtime: str
    widths: dict[str, list[int]]
    ms: dict[str, list[float]]
    align: int = 1  # fast widths are further restricted to multiples of this (besides the full width)

    def aligned(self, align: int) -> LatencyTable:
        return replace(self, align=align)

    def time(self, unit: str, kept: int) -> float:
        """Measured time of the unit's layers at `kept` channels (the next measured width up if between)."""
        widths, times = self.widths[unit], self.ms[unit]
        i = min(np.searchsorted(widths, kept), len(widths) - 1)
        return times[i]

    def saving(self, unit: str, kept: int) -> float:
        return self.ms[unit][-1] - self.time(unit, kept)

    def frontier(self, unit: str) -> list[int]:
        """Widths no wider width matches in speed: keeping more channels would cost measurably more time
        (more than TOLERANCE of the unit's largest time, the timer's noise). On a staircase these are the
        tops of the stairs; on a smooth ramp, every width. A unit whose time does not depend on its width
        at all (overhead-bound) has every width on it."""
        widths, times = self.widths[unit], self.ms[unit]
        noise = TOLERANCE * max(times)
        if max(times) - min(times) <= noise:
            return list(widths)
        return [w for i, w in enumerate(widths) if not times[i + 1:] or min(times[i + 1:]) > times[i] + noise]

    def fast_widths(self, unit: str) -> list[int]:
        """The frontier's widths that are multiples of `align`, and the full width."""
        full = self.widths[unit][-1]
        return [w for w in self.frontier(unit) if w % self.align == 0 or w == full]

    def ratios_for(self, unit: str) -> list[float]:
        """The ratios that keep exactly a fast width (ascending), for sliders and the solver."""
        full = self.widths[unit][-1]
        return sorted({round((full - w) / full, 6) for w in self.fast_widths(unit)})

    def snap(self, unit: str, kept: int) -> int:
        """The widest fast width not above `kept` (at least the narrowest fast width)."""
        fast = self.fast_widths(unit)
        below = [w for w in fast if w <= kept]
        return below[-1] if below else fast[0]

    def round_to(self) -> int:
        """The channel alignment the measurements show: the finest g whose every multiple (among the
        measured widths) is a fast width — 16 on an AVX-512 CPU, where 17..31 channels cost more than 32."""
        fast = {u: set(self.frontier(u)) for u in self.widths}
        for g in (1, 2, 4, 8, 16, 32, 64):
            if all(w in fast[u] for u in self.widths for w in self.widths[u] if w % g == 0):
                return g
        return 128

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _cache_key(fingerprint: str, batch: int, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    text = json.dumps([fingerprint, batch, threads, onnxruntime.__version__, cpu, TOLERANCE, "v1"])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _unit_layers(unit: Unit, shapes: dict[str, LayerShape]) -> list[tuple[str, str]]:
    """(layer, side) for every Conv2d/Linear whose outputs ("out") or inputs ("in") the unit cuts."""
    seen, out = set(), []
    for m in unit.members:
        if m.name in shapes and m.name not in seen:
            seen.add(m.name)
            side = "both" if shapes[m.name].depthwise else m.side
            out.append((m.name, side))
    return out


def build_table(model: nn.Module, example_input: torch.Tensor, units: list[Unit], batch: int = 32,
                threads: int = 1, progress: Progress | None = None) -> LatencyTable:
    """Measure every unit's layers at every candidate width (see module docstring)."""
    shapes = layer_shapes(model, example_input)
    widths, ms = {}, {}
    for done, unit in enumerate(units):
        cand = candidate_widths(unit)
        total = np.zeros(len(cand))
        for name, side in _unit_layers(unit, shapes):  # one interleaved measurement per layer
            total += _layer_times(shapes[name], side, cand, batch, threads)
        widths[unit.name], ms[unit.name] = cand, [round(float(t), LATENCY_DECIMALS) for t in total]
        if progress:
            progress(done + 1, len(units))
    runtime = f"onnxruntime {onnxruntime.__version__} CPU, {threads} thread(s), batch {batch}"
    return LatencyTable(batch, threads, runtime, widths, ms)


def _layer_times(shape: LayerShape, side: str, cand: list[int], batch: int, threads: int) -> np.ndarray:
    """Median ms of the one-layer model at each candidate width of the cut side, timed side by side."""
    models, inputs = {}, {}
    for w in cand:
        cin = w if side in ("in", "both") else shape.cin
        cout = w if side in ("out", "both") else shape.cout
        models[w] = layer_onnx(shape, cin, cout)
        inputs[w] = (cin, *shape.spatial) if shape.kind == "conv" else (*shape.spatial, cin)
    res = measure_interleaved(models, inputs, batch=batch, threads=threads, warmup=3, rounds=3, round_ms=4)
    return np.array([res[w].median_ms for w in cand])


def cache_path(spec, batch: int, threads: int):
    name = safe_name(spec.name)  # a user model's name is a path; the fingerprint in the key tells models apart
    return workspace(create=False) / "cache" / "latency" / f"{name}-{_cache_key(spec.fingerprint, batch, threads)}.json"


def cached(spec, batch: int = 32, threads: int = 1) -> LatencyTable | None:
    """The table if it was measured before on this machine and runtime, else None (nothing is measured)."""
    return _read(cache_path(spec, batch, threads))


def _read(path: Path) -> LatencyTable | None:
    """A cached table, or None if there is none or it is damaged (then it is measured again)."""
    try:
        return LatencyTable(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def load_or_build(spec, units: list[Unit], batch: int = 32, threads: int = 1,
                  progress: Progress | None = None) -> LatencyTable:
    """The cached table of spec's model (built and saved on first use)."""
    path = cache_path(spec, batch, threads)
    if (table := _read(path)) is not None:
        return table
    table = build_table(spec.model, spec.example_input, units, batch, threads, progress)
    write_cache(path, table.to_json().encode())  # best-effort: the table is returned either way
    return table


def alignments(table: LatencyTable) -> list[int]:
    """Alignments worth trying: the measured round_to and its halvings down to 1, coarsest first."""
    out, a = [], table.round_to()
    while a >= 1:
        out.append(a)
        a //= 2
    return out


def choose_by_measurement(spec, solve: Callable[[LatencyTable], object], table: LatencyTable,
                          base_onnx: bytes, progress: Progress | None = None) -> tuple[object, list[dict]]:
    """Solve once per alignment (see `alignments`), build and export each distinct solution that meets
    its target, time them all with the baseline in interleaved rounds at the table's batch, and return
    the fastest with a report row per candidate. The alignment is thus chosen by whole-model latency,
    which also captures what per-layer timing cannot (layout changes between layers)."""
    import copy

    candidates, report = {}, []
    aligns = alignments(table)
    for i, align in enumerate(aligns):
        allocation = solve(table.aligned(align))
        key = tuple(sorted(allocation.ratios.items()))
        report.append({"align": align, "met": allocation.met, "ratios": allocation.ratios,
                       "predicted_drop": allocation.predicted_drop, "duplicate_of": None})
        if not allocation.met:
            continue
        if key in candidates:
            report[-1]["duplicate_of"] = candidates[key][0]
            continue
        model = copy.deepcopy(spec.model)
        apply_channel(model, allocation.ratios, spec.example_input)
        candidates[key] = (align, allocation, export_onnx(model, spec.example_input)[0])
        if progress:
            progress(i + 1, len(aligns) + 1)
    if not candidates:
        return solve(table.aligned(aligns[-1])), report
    onnx = {"baseline": base_onnx, **{align: data for align, _, data in candidates.values()}}
    timed = measure_interleaved(onnx, tuple(spec.example_input.shape[1:]), batch=table.batch, threads=table.threads,
                                max_id=id_bound(spec.example_input))
    for row in report:
        lat = timed.get(row["align"]) or (timed.get(row["duplicate_of"]) if row["duplicate_of"] else None)
        if lat is not None:
            row["latency_ms"] = lat.median_ms
            row["speedup"] = timed["baseline"].median_ms / lat.median_ms
    best = min(candidates.values(), key=lambda c: timed[c[0]].median_ms)
    if progress:
        progress(len(aligns) + 1, len(aligns) + 1)
    return best[1], report

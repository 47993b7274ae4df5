"""The pruned model in the user's own formats, beside the ONNX file core.export writes: its weights as
`.safetensors`, the module rebuilt from them (`load_pruned`), and a `torch.export` program (`.pt2`). A recorded
run's files in each format (what `prunelab export` and the Export page hand out) are core.workflows.export_run's.

Getting the pruned module back without PruneLab-specific files — THE documented way:

    from core.config import PruneConfig
    from core.export_formats import load_pruned
    pruned = load_pruned(build(), PruneConfig.load("config.json"), "model.safetensors")

`build()` is the caller's own factory (or the registry's sample): the unpruned module. The config says how wide
every layer became (ratios, remove_blocks); its cut is replayed on a copy to get those shapes, then the run's
weights are loaded strictly. Shapes depend on the ratios and blocks only, never on which channels a criterion
picked, so the replay ranks by weight magnitude (no data needed); mask methods keep every shape and are not
replayed at all. model.safetensors is a plain state dict (any safetensors reader opens it); its metadata also
holds the example input's shape and dtype, which tracing the replay needs.

Without PruneLab at all: `torch.export.load("model.pt2").module()(x)` runs the `.pt2` with torch alone.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from core import preflight
from core.config import PruneConfig
from core.data import random_inputs
from core.errors import PruneLabError
from core.export import CHECK_BATCHES, TOLERANCE, deployable, dynamic_batch, traced_batch
from core.importance import Calibration
from core.prune import prune_step
from core.user_code import one_line
from core.weights import load_weights

EXAMPLE_KEY = "prunelab.example_input"  # safetensors metadata: {"shape", "dtype", "max_id"} of the example input
REPLAY_CRITERIA = ("l1", "random")  # data-free rankings, tried in this order, for replaying a cut's shapes
REPLAY_SAMPLES = 8  # random inputs the replay's BatchNorm re-estimate runs (its statistics are then overwritten)


# --- weights -----------------------------------------------------------------------------------------------


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors of which none shares memory with another (safetensors refuses shared storage: tied
    weights, views). A second name for the same storage gets its own copy; it loads back as the same values."""
    seen: set[int] = set()
    plain = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(tensor.untyped_storage().data_ptr())
        plain[name] = tensor
    return plain


def weights_bytes(model: nn.Module, example_input: torch.Tensor) -> bytes:
    """The model's state dict (pruning masks folded in) as a .safetensors file, with the example input's shape,
    dtype and largest token id in its metadata (what load_pruned needs to trace the model)."""
    example = {"shape": [1, *example_input.shape[1:]],
               "dtype": str(example_input.dtype).removeprefix("torch."),
               "max_id": None if example_input.is_floating_point() else int(example_input.max())}
    return save(_plain_tensors(deployable(model).state_dict()),
                metadata={"format": "pt", EXAMPLE_KEY: json.dumps(example)})


def stored_example(weights: str | Path) -> torch.Tensor:
    """An example input (batch of one) shaped as the one a weights file was saved with: zeros for floats, the
    largest token id for ids (random inputs drawn from it stay ids the model has)."""
    path = Path(weights)
    preflight.weights_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            found = json.loads((f.metadata() or {})[EXAMPLE_KEY])
        shape, dtype = [int(n) for n in found["shape"]], getattr(torch, found["dtype"])
        max_id = found["max_id"]
    except KeyError:
        raise PruneLabError(f"{path} does not record its model's example input: pass example_input=") from None
    except Exception as e:
        raise PruneLabError(f"cannot read the example input recorded in {path}: {one_line(e)}") from None
    return torch.zeros(shape, dtype=dtype) if max_id is None else torch.full(shape, int(max_id), dtype=dtype)


# --- the module back -------------------------------------------------------------------------------------


def _replay_cut(model: nn.Module, config: PruneConfig, example_input: torch.Tensor) -> None:
    """Cut `model` in place to the widths `config` leaves (ratios, remove_blocks), ranked without data."""
    method = config.technique
    criterion = next((c for c in REPLAY_CRITERIA if c in method.criteria()), config.criterion)
    calib = Calibration(random_inputs(example_input, REPLAY_SAMPLES, torch.Generator().manual_seed(0)),
                        torch.zeros(REPLAY_SAMPLES, dtype=torch.long))
    prune_step(model, example_input, replace(config, criterion=criterion), config.ratios, calib,
               list(config.remove_blocks))


def load_pruned(model: nn.Module, config: PruneConfig | str | Path, weights: str | Path,
                example_input: torch.Tensor | None = None) -> nn.Module:
    """The pruned module of a run: a copy of the unpruned `model` cut to the widths `config` (a PruneConfig or
    its config.json) leaves, with `weights` (the run's model.safetensors) loaded strictly, in eval mode. The
    caller's model is not touched. example_input defaults to the one recorded in the weights file.
    Weights of another cut or another model are refused in one line naming the tensors that do not fit."""
    config = config if isinstance(config, PruneConfig) else PruneConfig.load(config)
    example = stored_example(weights) if example_input is None else example_input
    pruned = copy.deepcopy(model).eval()
    if not config.technique.mask:  # masks keep every shape: the unpruned architecture takes the weights as is
        _replay_cut(pruned, config, example)
    load_weights(pruned, weights)
    return pruned.eval()


# --- .pt2 ------------------------------------------------------------------------------------------------


def _check_program(program: torch.export.ExportedProgram, model: nn.Module, example_input: torch.Tensor) -> None:
    """The exported program against the eager model on random inputs at CHECK_BATCHES (as the ONNX check)."""
    generator, run = torch.Generator().manual_seed(0), program.module()
    with torch.no_grad():
        for batch in CHECK_BATCHES:
            x = random_inputs(example_input, batch, generator)
            expected, got = model(x), run(x)
            gap = float((got - expected).abs().max()) / max(1.0, float(expected.abs().max()))
            if gap > TOLERANCE:
                raise PruneLabError(f".pt2 export differs from torch by {gap:.2e} (tolerance {TOLERANCE:.0e})")


def pt2_bytes(model: nn.Module, example_input: torch.Tensor) -> bytes:
    """A torch.export program of the model (masks folded in, batch dimension dynamic) as the bytes of a .pt2
    file, checked against the model; it runs with `torch.export.load(path).module()(x)` and torch alone."""
    model = deployable(model)
    quiet = logging.getLogger("torch.export")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (traced_batch(example_input),), dynamic_shapes=dynamic_batch(model))
    except Exception as e:  # the model's code is beyond torch.export: say so in one line
        raise PruneLabError(f".pt2 export failed: {type(e).__name__}: {one_line(e)[:300]}") from e
    finally:
        quiet.setLevel(level)
    _check_program(program, model, example_input)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()

"""A pruned Hugging Face model written back as a Hugging Face folder that `AutoModel*.from_pretrained` loads.

transformers 5 has no `pruned_heads`: a folder reloads only when its config.json can describe the pruned model —
the same head count, head width and feed-forward width in every layer, fewer layers, a narrower hidden size. So:
1. read the new sizes off the pruned model (layers left in the layer stack, heads and widths of its attention
   modules, the feed-forward width of each layer, the hidden size) and refuse non-uniform ones, saying which;
2. build the model class from the updated config and move the pruned weights into it — removed layers'
   successors renumbered, Conv1D weights transposed back (core.convert read them as Linear);
3. save with transformers' own save_pretrained, copy the tokenizer/processor files of the source folder, and
   reload the folder with from_pretrained and compare its outputs with the pruned model's: an export that does
   not reproduce the model is an error, never a file.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from core.attention import attention_views
from core.convert import is_conv1d
from core.errors import PruneLabError
from core.export import deployable
from core.loaders.user_spec import unwrap
from core.prune import apply
from core.prune.layers import PassThrough

TOLERANCE = 1e-5  # max |from_pretrained - pruned| on the logits
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "preprocessor_config.json",
                   "processor_config.json", "image_processor_config.json")
FFN_FIELDS = ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim", "encoder_ffn_dim")


def _layer_stack(model: nn.Module, layers: int) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList of the model's transformer layers: the first holding config.num_hidden_layers items."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == layers:
            return name, module
    return None


def _uniform(values: dict[str, int], what: str) -> int:
    """The one value every layer has, or a PruneLabError naming the layers that differ."""
    distinct = sorted(set(values.values()))
    if len(distinct) != 1:
        shown = ", ".join(f"{k}: {v}" for k, v in list(values.items())[:6])
        raise PruneLabError(f"{what} differs between layers ({shown}); a Hugging Face config holds one value for "
                            "all layers: prune it uniformly (--hf-compatible) or export .pt2")
    return distinct[0]


def _ffn_width(layer: nn.Module) -> int | None:
    """Input width of the layer's last Linear outside attention: its feed-forward down projection."""
    inside = {id(view.projection(p)) for view in attention_views(layer).values() for p in "qkvo"}
    linears = [m for m in layer.modules() if isinstance(m, nn.Linear) and id(m) not in inside]
    return linears[-1].in_features if linears else None


def new_sizes(model: nn.Module, config) -> tuple[dict[str, int], tuple[str, nn.ModuleList]]:
    """The config fields the pruned model needs (canonical names; "ffn" for the feed-forward width), checked
    uniform across its layers, and (name, ModuleList) of its layer stack."""
    stack = _layer_stack(model, config.num_hidden_layers)
    if stack is None:
        raise PruneLabError(f"cannot find the stack of {config.num_hidden_layers} layers in this model")
    kept = [layer for layer in stack[1] if not isinstance(layer, PassThrough)]
    sizes = {"num_hidden_layers": len(kept)}
    views = {f"layer {i}": v for i, layer in enumerate(kept) for v in attention_views(layer).values()}
    if views:
        sizes["num_attention_heads"] = _uniform({k: v.heads for k, v in views.items()}, "the number of heads")
        sizes["num_key_value_heads"] = _uniform({k: v.kv_heads for k, v in views.items()}, "key/value heads")
        sizes["head_dim"] = _uniform({k: v.head_dim for k, v in views.items()}, "the head width")
        sizes["hidden_size"] = _uniform({k: v.projection("q").in_features for k, v in views.items()},
                                        "the hidden size")
    widths = {f"layer {i}": w for i, layer in enumerate(kept) if (w := _ffn_width(layer)) is not None}
    if widths:
        sizes["ffn"] = _uniform(widths, "the feed-forward width")
    return sizes, stack


def _updated_config(config, sizes: dict[str, int]):
    """A copy of config with the new sizes written under the names this config uses."""
    new = config.__class__.from_dict(config.to_dict())
    for field in ("num_hidden_layers", "num_attention_heads", "hidden_size"):
        if field in sizes:
            setattr(new, field, sizes[field])  # attribute_map turns these into n_layer, n_heads, dim, ...
    if "num_key_value_heads" in sizes and hasattr(config, "num_key_value_heads"):
        new.num_key_value_heads = sizes["num_key_value_heads"]
    if "head_dim" in sizes and (hasattr(config, "head_dim") or sizes["head_dim"] * sizes["num_attention_heads"]
                                != sizes["hidden_size"]):
        new.head_dim = sizes["head_dim"]  # read by Llama-style and ViT attention; others derive it (checked below)
    ffn = next((f for f in FFN_FIELDS if f in config.to_dict()), None)
    if "ffn" in sizes and ffn is not None:
        setattr(new, ffn, sizes["ffn"])
    return new


def _renumbered(state: dict[str, torch.Tensor], stack: str, kept: list[int]) -> dict[str, torch.Tensor]:
    """state with layer indices of the stack renumbered 0.. over the kept layers (removed layers have none)."""
    position = {old: new for new, old in enumerate(kept)}
    pattern = re.compile(rf"^{re.escape(stack)}\.(\d+)\.")
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match:
            key = f"{stack}.{position[int(match.group(1))]}.{key[match.end():]}"
        out[key] = value
    return out


def _fit(fresh: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """state shaped for `fresh`: Conv1D weights transposed back; any other mismatch named (the config cannot say it)."""
    target = fresh.state_dict()
    missing = sorted(set(target) - set(state))
    if missing:
        raise PruneLabError(f"the rebuilt model expects weights the pruned one lacks: {', '.join(missing[:4])}")
    conv1d = {f"{name}.weight" for name, m in fresh.named_modules() if is_conv1d(m)}
    out = {}
    for key, expected in target.items():
        value = state[key]
        if key in conv1d:
            value = value.T.contiguous()  # Conv1D stores (in, out); core.convert made it a Linear
        if value.shape != expected.shape:
            raise PruneLabError(f"{key}: the pruned model has shape {tuple(value.shape)} but a model built from the "
                                f"updated config has {tuple(expected.shape)}; this config cannot describe the cut "
                                "(e.g. fewer heads where the head width is hidden_size / heads): export .pt2")
        out[key] = value
    return out


def is_hf(model: nn.Module) -> bool:
    """Whether model (or the module a loader wrapped) is a Hugging Face model: a config and save_pretrained."""
    inner = unwrap(model)
    return getattr(inner, "config", None) is not None and hasattr(inner, "save_pretrained")


def hf_model(pruned: nn.Module):
    """The pruned model as a fresh instance of its Hugging Face class, built from the updated config."""
    inner = unwrap(deployable(pruned))  # masks folded into the weights
    if not is_hf(inner):
        raise PruneLabError("not a Hugging Face model (no config / save_pretrained): export .pt2 or .safetensors")
    config = inner.config
    state = inner.state_dict()
    fresh = _built(inner, config)
    if _same_shapes(fresh, state):  # nothing structural was cut (masks): the config already says it all
        fresh.load_state_dict(_fit(fresh, state), strict=True, assign=True)
        return fresh.eval()
    sizes, (stack_name, stack) = new_sizes(inner, config)
    kept = [i for i, layer in enumerate(stack) if not isinstance(layer, PassThrough)]
    fresh = _built(inner, _updated_config(config, sizes))
    fresh.load_state_dict(_fit(fresh, _renumbered(state, stack_name, kept)), strict=True, assign=True)
    return fresh.eval()


def _built(model: nn.Module, config) -> nn.Module:
    """model's class built from config without memory for weights (meta device); load_state_dict assigns them.
    A config the class refuses (e.g. a hidden size that is no multiple of the head count) is a PruneLabError."""
    with torch.device("meta"):
        try:
            return model.__class__(config)
        except ValueError as e:  # transformers' own check of the config, in one line
            raise PruneLabError(f"{type(model).__name__} cannot be built with the pruned sizes: "
                                f"{' '.join(str(e).split())}; export .pt2") from None


def _same_shapes(fresh: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    target = fresh.state_dict()
    return set(target) == set(state) and all(state[k].shape in (v.shape, v.shape[::-1]) for k, v in target.items())


def export_hf(pruned: nn.Module, out: Path, example_input: torch.Tensor, source: Path | None = None) -> float:
    """Write the pruned model to folder `out` as a Hugging Face model (config.json, model.safetensors, and the
    tokenizer/processor files of `source`), reload it with from_pretrained and return the largest difference of
    its logits from the pruned model's on example_input (an error above TOLERANCE)."""
    import transformers

    model = hf_model(pruned)
    out.mkdir(parents=True, exist_ok=True)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # the CLI's output is for results
    try:
        model.save_pretrained(str(out))
        for name in PROCESSOR_FILES:
            if source is not None and (source / name).is_file():
                shutil.copy2(source / name, out / name)
        auto = getattr(transformers, auto_class(model))
        reloaded = auto.from_pretrained(str(out), local_files_only=True, trust_remote_code=False).eval()
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    with torch.no_grad():
        got, want = reloaded(example_input).logits, pruned.eval()(example_input)
    error = (got - want).abs().max().item()
    if not error <= TOLERANCE:
        raise PruneLabError(f"the exported folder reloads with logits {error:.2e} away from the pruned model's "
                            f"(tolerance {TOLERANCE}); not exported as a match")
    return error


def auto_class(model: nn.Module) -> str:
    """The Auto class that loads this model's architecture from a folder (model: the HF model or its wrapper)."""
    name = type(unwrap(model)).__name__
    for suffix in ("ForImageClassification", "ForSequenceClassification", "ForCausalLM"):
        if name.endswith(suffix):
            return f"AutoModel{suffix}"
    return "AutoModel"


# ---------------------------------------------------------------------------------------------------
# HF-compatible mode: only cuts a Hugging Face config can describe


def layer_stack_units(model: nn.Module, ratios: dict[str, float]) -> dict[str, float]:
    """ratios without the units outside the model's layer stack (a classifier head's or pooler's hidden layer:
    no config field holds their width), for HF-compatible pruning."""
    inside = stack_prefix(model)
    if inside is None:
        return ratios
    return {unit: r for unit, r in ratios.items() if unit.startswith(inside)}


def stack_prefix(model: nn.Module) -> str | None:
    """"name." of the model's layer stack as unit names spell it (the loader's wrapper included), or None when the
    model is not a Hugging Face model with a stack of config.num_hidden_layers layers."""
    inner = unwrap(model)
    layers = getattr(getattr(inner, "config", None), "num_hidden_layers", None)
    stack = _layer_stack(inner, layers) if isinstance(layers, int) else None
    if stack is None:
        return None
    return f"{'model.' if inner is not model else ''}{stack[0]}."


def layer_kinds(model: nn.Module, units: list[str]) -> dict[str, list[str]]:
    """The layer stack's units grouped by kind: the unit name with its layer index as "*" (e.g.
    "bert.encoder.layer.*.intermediate.dense") -> the units of that kind, in order. HF-compatible mode gives every
    unit of a kind one ratio, since a config holds one width per kind for all layers; units outside the stack are
    left out."""
    inside = stack_prefix(model)
    kinds: dict[str, list[str]] = {}
    for unit in units:
        if inside is not None and unit.startswith(inside):
            index, _, rest = unit[len(inside):].partition(".")
            kind = f"{inside}*" + (f".{rest}" if rest else "") if index.isdigit() else unit
            kinds.setdefault(kind, []).append(unit)
    return kinds


def check_hf_compatible(spec, config) -> None:
    """Refuse, in one line saying why, a config whose pruned model no Hugging Face config can describe: the cut
    is replayed on a copy with a data-free criterion (shapes depend on the ratios, not on the ranking) and the
    model class is built from the updated config without weights (core.export_hf.hf_model)."""
    why = hf_refusal(spec, config)
    if why is not None:
        raise PruneLabError(f"--hf-compatible: {why}")


def hf_refusal(spec, config) -> str | None:
    """Why no Hugging Face config can describe the model `config` prunes (one line), or None when one can
    (check_hf_compatible's test; the Tune and Export pages show the reason)."""
    cheap = replace(config, criterion="l1", finetune=replace(config.finetune, epochs=0))
    try:
        hf_model(apply(spec, cheap).model)
    except PruneLabError as e:
        return str(e)
    return None

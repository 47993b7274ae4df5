"""Every Streamlit cache in the app lives here, so what is shared between sessions is in one place.

Cached objects are shared by all users: the model in a ModelSpec is never modified (the engine prunes
deep copies), and cached dicts are treated as read-only by the pages.

A user's own model (the sidebar's "Your own model…") is known to the pages by a handle, "user-<hash>" of
what loads it (see `UserModel`); the handle maps to its load arguments in the session that loaded it
(dashboard.state.user_models), so `spec(handle)` can load it like any registry name. The cache below is
keyed by the arguments too, so nothing but the cache is shared between sessions. Its ModelSpec is
renamed to the handle: configs, runs, sweeps and cache files then name it consistently (and safely: a
reference holds slashes, which must not end up in the workspace's file names).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import experiment, export_hf, latency, methods, models, plan, recipes, search_runs
from core.config import Pattern, PruneConfig
from core.data import id_bound
from core.errors import PruneLabError
from core.estimate import CostModel, build_cost_model
from core.hardware import LatencyTable
from core.importance.blocks import block_scores as score_blocks
from core.importance.heads import head_scores as score_heads
from core.importance.heads import scores_frame
from core.metrics import layer_summary
from core.prune import calibration
from core.sensitivity import read_table
from core.spec import ModelSpec
from core.strategy import detect_family
from core.user_data import split_reference
from core.workflows import export_run
from dashboard import netron_server, state, uploads

USER_PREFIX = "user-"


@dataclass(frozen=True)
class UserModel:
    """The arguments of core.models.load for a user's model: a reference (file.py:function, a pickled
    model .pt, a Hugging Face folder, or a registry name with other weights), weights and data files."""

    ref: str
    weights: str | None = None
    data: str | None = None
    trust_pickle: bool = False

    def handle(self) -> str:
        """'user-' and a hash of the arguments and of the files' sizes and modification times, so a model
        file edited on disk loads afresh instead of coming from the cache."""
        data = self.data and split_reference(self.data)[0]  # the file a data reference names, without its columns
        stamps = [_stamp(p) for p in (_ref_path(self.ref), self.weights, data)]
        text = json.dumps({**asdict(self), "stamps": stamps}, sort_keys=True)
        return USER_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]


def _ref_path(ref: str) -> str:
    """The file or folder part of a reference ('f.py' of 'f.py:build')."""
    path, _, func = ref.rpartition(":")
    return path if path and func.isidentifier() else ref


def _stamp(path: str | None) -> list[int] | None:
    """Size and modification time of a file, or of a folder's newest entry; None if there is nothing."""
    if not path:
        return None
    try:
        p = Path(path)
        stats = [p.stat(), *(c.stat() for c in p.iterdir())] if p.is_dir() else [p.stat()]
    except OSError:
        return None
    return [sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]


def user_model(name: str) -> UserModel | None:
    """The load arguments behind a handle this session loaded (None for a registry name)."""
    return state.user_models().get(name) if name.startswith(USER_PREFIX) else None


def is_loaded(args: UserModel) -> bool:
    """Whether this session already loaded a model with these arguments (and unchanged files)."""
    return args.handle() in state.user_models()


def load_user_model(args: UserModel) -> str:
    """Register args under their handle in this session and load the model (cached); return the handle. A model
    that fails to load (PruneLabError, or any exception from the user's code) is not left registered."""
    handle, loaded = args.handle(), state.user_models()
    known = handle in loaded
    loaded[handle] = args
    try:
        spec(handle)
    except BaseException:
        if not known:
            loaded.pop(handle, None)
        raise
    return handle


def display_name(name: str) -> str:
    """What the sidebar and pages call a model: a user model by its reference, a registry model by name."""
    args = user_model(name)
    return name if args is None else args.ref


def spec(name: str) -> ModelSpec:
    """The model called `name`: a registry name, or a handle of a user model this session loaded (renamed to the
    handle)."""
    return load_spec(name, user_model(name))


@st.cache_resource(show_spinner="Loading the model…")
def load_spec(name: str, args: UserModel | None) -> ModelSpec:
    """The model `name` loaded with args (None: a registry model); shared by every session that asks the same."""
    if args is None:
        if name.startswith(USER_PREFIX):
            raise PruneLabError(f"{name} is not loaded in this server session: load it again under "
                                "“Your own model…” in the sidebar")
        if not models.is_registered(name):  # a user's file runs only from the sidebar form, never by name
            raise PruneLabError(f"unknown model {name!r}: load your own under “Your own model…” in the sidebar")
        return models.load(name)
    loaded = models.load(args.ref, weights=args.weights, trust_pickle=args.trust_pickle, data=args.data)
    return replace(loaded, name=name)


@st.cache_data(show_spinner="Measuring the baseline: ONNX export, accuracy, onnxruntime latency…")
def baseline(name: str) -> experiment.Baseline:
    return experiment.baseline(spec(name))


@st.cache_resource(show_spinner="Tracing layers and channel coupling…")
def cost_model(name: str, method: str) -> CostModel:
    s = spec(name)
    return build_cost_model(s.model, s.example_input, method)


@st.cache_data(show_spinner="Scoring channels…")
def importance_scores(name: str, method: str, criterion: str, samples: int = 512, seed: int = 0
                      ) -> dict[str, np.ndarray]:
    """Heatmap rows; raises core.importance.NotApplicable (a PruneLabError) when the criterion has none."""
    s = spec(name)
    return methods.heatmap(s.model, s.example_input, method, criterion, calibration(s, samples, seed), seed)


@st.cache_data
def layers(name: str) -> pd.DataFrame:
    s = spec(name)
    return pd.DataFrame(layer_summary(s.model, s.example_input))


@st.cache_data(show_spinner="Profiling layers in onnxruntime…")
def layer_latency(name: str) -> dict[str, float]:
    """Measured onnxruntime kernel time per module (ms per batch-32 run, unfused graph)."""
    s = spec(name)
    modules = {n for n, _ in s.model.named_modules() if n}
    return latency.profile_layers(baseline(name).onnx, tuple(s.example_input.shape[1:]), modules,
                                  max_id=id_bound(s.example_input))


@st.cache_data
def unit_costs(name: str, method: str) -> pd.DataFrame:
    """Per unit: share of params, FLOPs and measured latency in the layers whose outputs it cuts."""
    cm = cost_model(name, method)
    times: dict[str, float] = {}
    for module, ms in layer_latency(name).items():
        unit = cm.owner(module)
        if unit is not None:
            times[unit] = times.get(unit, 0.0) + ms
    costs = cm.unit_costs()
    model = cm.estimate({})  # shares of the whole model, as the latency share is (and as the chart says)
    total = {k: model[k] or 1 for k in ("params", "flops")}
    all_ms = sum(layer_latency(name).values()) or 1.0
    return pd.DataFrame([{
        "unit": u, "params": c["params"], "flops": c["flops"], "latency_ms": times.get(u, 0.0),
        "params %": 100 * c["params"] / total["params"], "FLOPs %": 100 * c["flops"] / total["flops"],
        "latency %": 100 * times.get(u, 0.0) / all_ms,
    } for u, c in costs.items()])


@st.cache_data(show_spinner="Scoring for the global threshold…")
def raw_scores(name: str, method: str, criterion: str, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Unscaled importance scores (the global strategy compares them across units)."""
    s = spec(name)
    calib = calibration(s, samples, seed)
    scores = methods.get(method).scores(s.model, s.example_input, criterion, calib, seed)
    return {k: v.numpy() for k, v in scores.items()}


@st.cache_data(show_spinner="Scoring attention heads…")
def head_scores(name: str, criterion: str, samples: int = 512, seed: int = 0) -> pd.DataFrame:
    """Layers x heads importance table (core.importance.heads.scores_frame); scored on a copy, since the
    taylor criterion hooks gates into the model while it runs."""
    s = spec(name)
    return scores_frame(score_heads(copy.deepcopy(s.model), criterion, calibration(s, samples, seed), seed))


@st.cache_data(show_spinner="Measuring how much each block changes its input…")
def block_scores(name: str, samples: int = 512, seed: int = 0) -> dict[str, float]:
    """1 - cosine similarity of each removable block's input and output (lower = safer to remove), in
    module order; measured on a copy (hooks)."""
    s = spec(name)
    blocks = [u.name for u in cost_model(name, "layer").units]
    return score_blocks(copy.deepcopy(s.model), blocks, calibration(s, samples, seed).x) if blocks else {}


@st.cache_data(show_spinner="Finding one global threshold…")
def global_ratios(name: str, ratio: float, criterion: str, samples: int = 512, seed: int = 0) -> dict[str, float]:
    """Per-layer shares under one importance threshold over all weights (core.plan.global_ratios)."""
    return plan.global_ratios(spec(name), ratio, criterion, samples, seed)


@st.cache_data
def nm_layers(name: str) -> list[str]:
    """The layers that can hold an N:M pattern (more than one input channel per group)."""
    return list(plan.nm_ratios(spec(name), Pattern(), None))


@st.cache_data(show_spinner=False)
def finetune_recipe(name: str) -> recipes.Choice:
    """The fine-tune recipe core.recipes chooses for model `name` (for a BatchNorm CNN that takes one gradient)."""
    return recipes.choose(spec(name))


@st.cache_data(show_spinner=False)
def model_family(name: str) -> str:
    """cnn, transformer or mlp (core.strategy.detect_family) of the model called `name`."""
    return detect_family(spec(name).model)


@st.cache_data(max_entries=32)
def sweep_table(path: str, mtime_ns: int, model: str) -> pd.DataFrame:
    """A measured sweep's table, parsed once per file version (every rerun of several parts asks for it)."""
    return read_table(path, model)


@st.cache_data(max_entries=16)
def latency_table(path: str, mtime_ns: int) -> LatencyTable:
    """A width-latency table file (core.hardware), parsed once per file version."""
    return LatencyTable(**json.loads(Path(path).read_text()))


@st.cache_data(show_spinner=False, max_entries=8)
def run_pt2(name: str, folder: str, mtime_ns: int, _spec: ModelSpec) -> bytes:
    """A run's .pt2 (core.workflows.export_run), made once per version of its weights file. Called by the Export
    page's download button when clicked, on a thread of its own where session state is out of reach: the page
    passes the base model's spec (`name`'s, not hashed) instead of this looking it up."""
    return export_run.run_pt2(Path(folder), _spec.model, _spec.example_input)


@st.cache_data(show_spinner="Checking the cut against a Hugging Face config…", max_entries=64)
def hf_refusal(name: str, config_json: str) -> str | None:
    """Why no Hugging Face config can describe what the config prunes model `name` to, or None when one can
    (core.export_hf.hf_refusal: it cuts a copy, so the Tune page runs it on its button only)."""
    return export_hf.hf_refusal(spec(name), PruneConfig.from_json(config_json))


@st.cache_data(show_spinner=False, max_entries=4)
def run_hf_zip(name: str, folder: str, mtime_ns: int, _spec: ModelSpec, source: str | None) -> bytes:
    """A run as a zipped Hugging Face folder (core.workflows.export_run.run_hf_zip), made once per version of the
    run's config.json. Called by the Export page's download button when clicked (as run_pt2: `_spec` is passed,
    not looked up); source: the model's own folder, whose tokenizer/processor files go along."""
    return export_run.run_hf_zip(Path(folder), _spec.model, _spec.example_input, source and Path(source))


@st.cache_resource(show_spinner="Starting the Netron viewer…")
def netron_port(model_path: str, mtime_ns: int) -> int:
    """One Netron server per version of a model file (a server is a resource: kept, not copied)."""
    return netron_server.serve(model_path)


@st.cache_data(show_spinner=False, max_entries=16)
def search_record(path: str, mtime_ns: int) -> dict | None:
    """A search's search.json (core.search_runs.read), parsed once per file version: a running search's page
    polls it about once a second and it changes only when a trial lands."""
    return search_runs.read(Path(path))


@st.cache_resource(show_spinner=False)
def clean_uploads(folder: str) -> int:
    """Delete the uploads older than their retention, once per server process and uploads folder (the first
    page view after a start); the number deleted. A bad $PRUNELAB_UPLOAD_DAYS raises (and is not cached)."""
    return len(uploads.clean())

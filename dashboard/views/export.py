"""Export page: download the config, the pruned ONNX model (fp32 and int8) and the measurements of a
recorded run (the store's record, as on Results; its folder gives the model files), the pruned module for PyTorch
(a torch.export .pt2 and its weights as .safetensors), each with the line that loads it, and see what each
deployable form costs (mask vs shrink vs deploy)."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import streamlit as st

from core.config import PruneConfig
from core.export_hf import auto_class, is_hf
from core.run_folder import INT8_FILE, WEIGHTS_FILE
from core.store import Experiment
from core.workflows.export_run import FILE_NAMES, how_to_load, model_folder
from dashboard import cache, jobs, state
from dashboard.components.text import md
from dashboard.views.results import pick_run


def _deployment(name: str, run: Experiment) -> None:
    st.markdown("#### What each deployable form costs")
    if run.file("model.onnx") is None:
        st.caption("Measuring the deployable forms needs the run's model.onnx.")
        return
    _, error = jobs.panel("deploy", name)
    if error:
        st.error(f"Measuring the deployable forms failed: {md(error)}")
    if (report_path := run.file("deploy.json")) is None:
        st.caption("Dense ONNX, gzip, a sparse encoding, int8 ONNX (onnxruntime static quantisation) and sparse + "
                   "int8 — each measured for size, latency and accuracy.")
        st.button("Measure deployable forms (int8 included)", key=state.RUN_DEPLOY,
                  disabled=jobs.running("deploy", name),
                  on_click=lambda: jobs.start("deploy", name, run_path=str(run.folder)))
        return
    report = json.loads(report_path.read_text())
    table = pd.DataFrame(report["rows"]).rename(columns={
        "form": "form", "bytes": "bytes", "size_vs_dense": "size vs pruned dense",
        "latency_ms": f"latency ms (batch {report['batch']})", "speedup_vs_baseline": "speed-up vs baseline",
        "accuracy": "test accuracy", "runs_as": "how it runs"})
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption("Latency only where onnxruntime runs the form as it is; encodings must be decoded to dense first "
               "(no sparse kernels on this CPU runtime), gzip inflated.")


def _pytorch(name: str, run: Experiment) -> None:
    """The pruned module for PyTorch users: a torch.export program (made when its button is clicked, cached) and
    the weights load_pruned rebuilds it from, each with one line that loads it."""
    st.markdown("#### The pruned model in your format")
    weights = run.file(WEIGHTS_FILE)
    c1, c2, c3 = st.columns(3)
    c1.caption("ONNX (above), in onnxruntime:")
    c1.code(how_to_load("onnx"), language="python")
    if weights is None:
        c2.caption(f"No {WEIGHTS_FILE} for this run (recorded before runs kept their pruned weights, or outside this "
                   "workspace's run folders): replay its config with the command below to get the .pt2 and the "
                   "weights.")
        return
    spec, stamp = cache.spec(name), weights.stat().st_mtime_ns
    folder = str(run.folder)
    c2.download_button("model.pt2", lambda: cache.run_pt2(name, folder, stamp, spec), file_name="model.pt2",
                       mime="application/octet-stream", key=state.DL_PT2, width="stretch")
    c2.caption("A torch.export program (made when you click); runs with torch alone:")
    c2.code(how_to_load("pt2"), language="python")
    c3.download_button(WEIGHTS_FILE, weights.read_bytes, file_name=WEIGHTS_FILE, mime="application/octet-stream",
                       key=state.DL_WEIGHTS, width="stretch")
    args = cache.user_model(name)
    c3.caption("The weights, rebuilt into your module (core.export_formats.load_pruned replays the config's cut on "
               + ("your factory's unpruned model, build() below" if args else "the unpruned sample") + "):")
    c3.code(how_to_load("safetensors", "build()" if args else f'load("{name}").model'), language="python")


def _hugging_face(name: str, run: Experiment) -> None:
    """A run of a Hugging Face model as a zipped folder that from_pretrained loads (made when its button is clicked,
    checked by reloading it), or the one line saying why this run cannot be one."""
    spec = cache.spec(name)
    if not is_hf(spec.model):
        return
    weights, config = run.file(WEIGHTS_FILE), run.file("config.json")
    if weights is None or config is None:
        st.caption(f"No Hugging Face folder: this run has no {WEIGHTS_FILE} (recorded before runs kept their pruned "
                   "weights); replay its config with the command below to get one.")
        return
    if why := cache.hf_refusal(name, run.config.to_json()):
        st.warning(f"No Hugging Face folder: {md(why)}. The model.pt2 above runs with torch alone.")
        return
    args = cache.user_model(name)
    source = model_folder(args.ref) if args else None  # its tokenizer/processor files go along
    folder, stamp = str(run.folder), config.stat().st_mtime_ns
    c1, c2 = st.columns([1, 2])
    c1.download_button("Hugging Face folder (.zip)",
                       lambda: cache.run_hf_zip(name, folder, stamp, spec, source and str(source)),
                       file_name=f"{FILE_NAMES['hf']}.zip", mime="application/zip", key=state.DL_HF, width="stretch")
    c2.caption(f"config.json, model.safetensors{' and the tokenizer files' if source else ''} (made when you click, "
               "reloaded and compared with the pruned model); unzipped, transformers loads it:")
    c2.code(how_to_load("hf", auto=auto_class(spec.model)), language="python")


def render(name: str) -> None:
    run = pick_run(name, key=state.EXPORT_RUN)
    if run is None:
        return
    config, command = _replay(name, run.config)
    c1, c2, c3 = st.columns(3)
    c1.download_button("config.json", config.to_json(), file_name="config.json", mime="application/json",
                       key=state.DL_CONFIG, width="stretch")
    if onnx := run.file("model.onnx"):
        c2.download_button("model.onnx", onnx.read_bytes(), file_name="model.onnx", mime="application/octet-stream",
                           key=state.DL_ONNX, width="stretch")
    else:  # the exporter could not handle this model (metrics.json says why), or its folder is gone or elsewhere
        why = run.metrics["pruned"].get("onnx_error") or f"not in a run folder of this workspace ({run.folder})"
        c2.warning(f"No model.onnx: {md(why)}")
    # the record's metrics are the run's metrics.json, written alike (core.experiment.RunOutput.metrics_json)
    c3.download_button("metrics.json", json.dumps(run.metrics, indent=2, sort_keys=True) + "\n",
                       file_name="metrics.json", mime="application/json", key=state.DL_METRICS, width="stretch")
    if int8 := run.file(INT8_FILE):  # the run's own int8 (quantize="int8"), or the one measured below
        st.download_button(INT8_FILE, int8.read_bytes(), file_name=INT8_FILE, mime="application/octet-stream",
                           key=state.DL_INT8)
    _pytorch(name, run)
    _hugging_face(name, run)
    st.markdown("Replay this configuration without a browser (same pruned model, same measurements):")
    st.code(command, language="bash")
    st.markdown(f"Saved in {md(run.folder or 'no folder (a later run replaced its files)')}")
    with st.expander("config.json, as downloaded"):
        st.json(config.to_dict())
    _deployment(name, run)


def _replay(name: str, config: PruneConfig) -> tuple[PruneConfig, str]:
    """The config to hand out and the command that replays it. A user model's config names its reference
    instead of the dashboard's handle (which the command line does not know), and the command passes the
    files it was loaded with (paths as given: relative ones are relative to where the dashboard runs)."""
    args = cache.user_model(name)
    if args is None:
        return config, "prunelab apply config.json --out pruned/"
    flags = "".join(f" --{flag} {shlex.quote(path)}" for flag, path in (("model", args.ref), ("weights", args.weights),
                                                                        ("data", args.data)) if path)
    flags += " --trust-pickle" if args.trust_pickle else ""  # --model: the CLI runs no file a config names
    return config.for_model(args.ref), f"prunelab apply config.json{flags} --out pruned/"

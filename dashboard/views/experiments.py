"""Experiments page: every recorded experiment of the model (core.store), filtered; two compared; the Pareto
front of accuracy against a cost; one experiment downloaded, loaded into Tune or deleted; a config file
imported into Tune.

The store is synced (run folders it has not seen imported, killed runs marked) and read on every rerun: it
is a small SQLite file, and nothing read from it is cached, so the page never shows a stale list. A damaged
store degrades: unreadable records are listed by id and reason beside the rest, a damaged file moved aside is
named, a store that cannot be written is shown as last saved.
"""

from __future__ import annotations

import streamlit as st

from core.errors import PruneLabError
from core.run_folder import HANDED_OUT, INT8_FILE, WEIGHTS_FILE
from core.store import RUN_FILES, STATUSES, Experiment, Store, Unreadable
from core.store_compare import judged_by, task_value
from core.store_rows import runs_root
from dashboard import state
from dashboard.components import experiments as tables
from dashboard.components import load_config, messages
from dashboard.components.pareto import AXES, pareto_chart
from dashboard.components.text import md

ALL = "all"
MIME = {"config.json": "application/json", "model.onnx": "application/octet-stream",
        INT8_FILE: "application/octet-stream",
        WEIGHTS_FILE: "application/octet-stream", "metrics.json": "application/json"}


def _filtered(everything: list[Experiment]) -> list[Experiment]:
    """Method, status and id-search filters over the model's experiments."""
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        shown = _pick("Method", [ALL, *sorted({e.method for e in everything})], state.EXP_METHOD)
    with c2:
        status = _pick("Status", [ALL, *STATUSES], state.EXP_STATUS)
    text = c3.text_input("Search ids", key=state.EXP_SEARCH, placeholder="part of an id")
    return [e for e in everything if shown in (ALL, e.method) and status in (ALL, e.status)
            and tables.matches(e, text)]


def _pick(label: str, options: list[str], key: str, index: int = 0) -> str:
    """A selectbox that forgets a choice no longer offered (a deleted experiment, a filtered-out one)."""
    state.forget_choice(key, options)  # before the selectbox is drawn
    return st.selectbox(label, options, index=min(index, len(options) - 1), key=key)


def _compare(shown: list[Experiment], store: Store) -> None:
    """Two experiments: their config diff (changed rows only, or all with changes highlighted), then numbers."""
    st.markdown("#### Compare two experiments")
    if len(shown) < 2:
        st.caption("Comparing needs two experiments: widen the filters, or run another.")
        return
    ids = [e.id for e in shown]
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    with c1:
        a = _pick("A", ids, state.EXP_A, index=1)  # the list is newest first: A older, B newer by default
    with c2:
        b = _pick("B", [i for i in ids if i != a], state.EXP_B)
    changed_only = c3.toggle("Changed only", value=True, key=state.EXP_CHANGED_ONLY)
    frame = tables.diff_frame(store.diff(a, b), a, b, changed_only)
    if frame.empty:
        st.info(f"{md(a)} and {md(b)} have the same config.")
    else:
        st.dataframe(frame if changed_only else tables.highlight_changed(frame), hide_index=True, width="stretch")
    by_id = {e.id: e for e in shown}
    st.dataframe(tables.side_by_side(by_id[a], by_id[b]), hide_index=True, width="stretch")


def _pareto(name: str, store: Store) -> None:
    """Accuracy against the chosen cost for every done experiment of the model, the front highlighted."""
    st.markdown("#### Pareto front")
    axis = st.selectbox("Cost", list(AXES), format_func=AXES.get, key=state.EXP_PARETO_X)
    done = store.list(model=name, status="done")
    metric = judged_by(done)  # test accuracy, or a language model's perplexity (lower is better)
    points = [e for e in done if task_value(e, metric) is not None and getattr(e, axis) is not None]
    if points:
        st.plotly_chart(pareto_chart(points, store.pareto(name, axis), axis), width="stretch", key=state.EXP_PARETO)
        better = "higher" if metric.higher_is_better else "lower"
        st.caption(f"The front: experiments no other one beats on both the cost (lower) and {metric.label} ({better}).")
    else:
        st.info("No finished experiment of this model has both a test accuracy and this cost to plot.")
    if left_out := len(done) - len(points):
        st.caption(f"{left_out} finished experiment(s) left out: no test accuracy (a model without test data "
                   f"reports none) or no {AXES[axis]}.")


def _downloads(exp: Experiment) -> None:
    """Download buttons for a done experiment's files, read from its folder (only once asked for: a model file
    can be large); a missing model.onnx says why."""
    if not st.toggle("Download its files (config.json, model.onnx, metrics.json)", key=state.EXP_DOWNLOADS):
        return
    if exp.status != "done" or exp.folder is None:
        why = f"it is {exp.status}" if exp.status != "done" else "a later run replaced its files"
        st.caption(f"Nothing to download: {md(why)}.")
        return
    if not exp.folder.resolve().is_relative_to(runs_root()):
        st.info(f"Its folder {md(exp.folder)} is outside {md(runs_root())}: PruneLab only hands out run "
                "files it keeps there (copy them from the folder itself).")
        return
    present = {n: path for n in HANDED_OUT if (path := exp.file(n))}
    for col, (file, path) in zip(st.columns(len(HANDED_OUT)), present.items(), strict=False):
        col.download_button(file, path.read_bytes(), file_name=file, mime=MIME[file],
                            key=state.download_key(file), width="stretch")
    if "model.onnx" not in present:
        why = (exp.metrics or {}).get("pruned", {}).get("onnx_error") or f"it is missing from {exp.folder}"
        st.warning(f"No model.onnx for this run: {md(why)}. The config and measurements are still here.")
    if missing := [n for n in RUN_FILES if n not in present and n != "model.onnx"]:
        st.warning(f"{', '.join(missing)} missing from {md(exp.folder)}.")


def _delete(name: str, exp_id: str, confirm_key: str) -> None:
    """on_click callback: remove the experiment's record and folder (the store refuses what it must not)."""
    state.forget(confirm_key)
    try:
        folder = Store().delete(exp_id)
    except PruneLabError as e:
        messages.say(state.DELETE_MESSAGE, name, "error", str(e))
        return
    where = f" and its folder {folder}" if folder else " (it had no files left)"
    messages.say(state.DELETE_MESSAGE, name, "success", f"Deleted {exp_id}{where}.")


def _one(name: str, shown: list[Experiment]) -> None:
    """One experiment: its files to download, Load into Tune, and delete behind a confirmation."""
    st.markdown("#### One experiment: download, load into Tune, delete")
    by_id = {e.id: e for e in shown}
    exp = by_id[_pick("Experiment", list(by_id), state.EXP_SELECTED)]
    detail = f" · parent {exp.parent}" if exp.parent else ""
    st.caption(md(f"{exp.status} · {exp.method}, criterion {exp.criterion}{detail} · folder {exp.folder or '—'}"
                  + (f" · {exp.error}" if exp.error else "")))
    _downloads(exp)
    st.button("Load into Tune", key=state.EXP_LOAD, on_click=load_config.on_load, args=(name, exp.id),
              help="Sets the Tune page's method, criterion and sliders (or blocks) to this experiment's config.")
    messages.show(state.LOAD_MESSAGE, name)
    confirm_key = state.delete_confirm_key(exp.id)
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    confirmed = c1.checkbox(f"Yes, delete {md(exp.id)} and its run folder", key=confirm_key)
    c2.button("Delete", key=state.EXP_DELETE, disabled=not confirmed, on_click=_delete,
              args=(name, exp.id, confirm_key))
    messages.show(state.DELETE_MESSAGE, name)


def _import(name: str) -> None:
    """A config.json upload, checked against the model and loaded into Tune (see components.load_config)."""
    st.markdown("#### Import a config file")
    st.file_uploader("A PruneLab config.json (from Export, the CLI or another machine)", type=["json"],
                     max_upload_size=1, key=state.EXP_IMPORT, on_change=load_config.on_upload,
                     args=(name, state.EXP_IMPORT))
    messages.show(state.IMPORT_MESSAGE, name)
    load_config.offer_own_model()


def _open_store() -> Store | None:
    """The store, synced; what it could not do is said on the page (None if it cannot be opened at all)."""
    try:
        store = Store()
    except PruneLabError as e:
        st.error(f"The experiment store cannot be opened: {md(e)}", icon=":material/error:")
        return None
    if store.notice:
        st.warning(md(store.notice), icon=":material/warning:")
    try:
        store.sync()
    except PruneLabError as e:
        st.warning(f"The experiment store could not be brought up to date: {md(e)}", icon=":material/warning:")
    if store.read_only:
        st.warning(f"The experiment store {md(store.path)} cannot be written ({md(store.read_only)}): shown as last "
                   "saved; new runs are not recorded.", icon=":material/warning:")
    if copies := store.damaged_copies():
        st.caption("Damaged copies of the store kept (nothing was deleted): " + md(", ".join(map(str, copies))))
    return store


def _unreadable(rows: list[Unreadable]) -> None:
    """Records that cannot be read back, by id and reason (shown as a table: their text is data, not markup)."""
    st.warning(f"{len(rows)} record(s) of this model cannot be read (listed below); the others are shown.",
               icon=":material/warning:")
    st.dataframe(tables.unreadable(rows), hide_index=True, width="stretch")


def render(name: str) -> None:
    """The Experiments page of model `name` (the store synced first; the import works without experiments)."""
    store = _open_store()
    everything, unreadable = store.scan(model=name) if store is not None else ([], [])
    if unreadable:
        _unreadable(unreadable)
    if everything:
        shown = _filtered(everything)
        st.dataframe(tables.table(shown), hide_index=True, width="stretch")
        st.caption(f"{len(shown)} of {len(everything)} experiment(s) of this model, newest first; numbers of the "
                   f"pruned model (size in bytes, fp32), created in UTC. Store: {md(store.path)}")
        _compare(shown, store)
        _pareto(name, store)
        if shown:
            _one(name, shown)
    else:
        st.info("No experiments recorded for this model yet: runs from the Tune page and the command line are "
                "listed here.")
        messages.show(state.DELETE_MESSAGE, name)
    _import(name)

"""The sidebar's model choice, with a last option that loads the user's own model.

"Your own model…" opens a small form: a reference (file.py:build, a pickled model .pt or a Hugging Face
folder, as core.user_models reads them), optional weights and data (a path on this machine or an upload,
saved by dashboard.uploads; any format core.user_data.load_data reads) with its text and label columns, a
trust-pickle checkbox and Load. Load first check-loads the model in a separate process (dashboard.load_job:
time limit, memory limit, Cancel; killed when the session ends), then loads it here. A loaded model is
registered in dashboard.cache under a handle, listed in this session's choices by its reference and selected;
while the form is open, or when loading fails, the pages keep showing the model chosen before.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.errors import PruneLabError
from core.models import available
from core.user_data import data_reference, split_reference
from dashboard import cache, load_job, state, uploads
from dashboard.components.text import md

Field = tuple[str, uploads.Upload | None]  # a file field: the typed path and the upload (None: none)

OWN = "Your own model…"
WEIGHT_TYPES = ["pt", "pth", "safetensors"]
DATA_TYPES = ["npz", "csv", "jsonl"]  # uploadable data files (a datasets or image folder is given by its path)
DATA_HINT = "path/to/data: .npz (x, y), .csv/.jsonl, a datasets folder or an image folder"
PICKLE_RISK = ("Loading a pickle runs whatever code it carries, with this server's permissions. Only tick this "
               "for files whose source you trust.")
REF_HELP = ("`path/to/file.py:build` — a function returning a dict (model, example_input, eval_loader, optional "
            "train_loader and metric) or a ModelSpec; `path/to/model.pt` — a whole pickled model (needs trust "
            "and data); `path/to/folder` — a local Hugging Face classifier (needs data: an .npz, a .csv/.jsonl text "
            "file, a `datasets` folder or an image folder with a sub-folder per class). Paths are on the machine "
            "running the dashboard.")
COLUMN_HELP = ("For a .csv/.jsonl file or a datasets folder: the column to read. Empty: `text` or `sentence` for "
               "the text, `label` for the label. Labels may be integers or class names.")


def pick_model(default: str) -> str:
    """Draw the model selectbox (and the own-model form when chosen); return the name the pages show."""
    names = [*available(), *state.loaded_models(), OWN]
    state.settle_model_choice(names, default)  # before the selectbox is drawn
    labels = {n: cache.display_name(n) for n in names}  # a user model's handle reads as its reference
    choice = st.sidebar.selectbox("Model", names, key=state.MODEL_CHOICE, format_func=labels.__getitem__,
                                  help="Bundled sample models with trained weights, the reference zoo, models "
                                       "you loaded, or your own.")
    if choice != OWN:
        load_job.abandon()  # a load left running behind a closed form would load for nobody
        state.show_model(choice)
        _describe(choice)
        return choice
    shown = state.last_shown(default if default in names else names[0])
    st.sidebar.caption(f"The pages show **{md(cache.display_name(shown))}** until your model loads.")
    _form()
    return shown


def _describe(name: str) -> None:
    """A caption with the files a user model was loaded with."""
    args = cache.user_model(name)
    if args is None:
        return
    parts = [f"weights {md(args.weights)}" if args.weights else "", f"data {md(args.data)}" if args.data else "",
             "pickle trusted" if args.trust_pickle else ""]
    st.sidebar.caption(f"Your model {md(args.ref)}" + "".join(f" · {p}" for p in parts if p))


def _form() -> None:
    """Reference, weights, data, trust and Load, in a bordered box of the sidebar."""
    box = st.sidebar.container(border=True)
    ref = box.text_input("Model reference", key=state.OWN_REF, placeholder="path/to/file.py:build", help=REF_HELP)
    weights = _file_field(box, "Weights (optional)", state.OWN_WEIGHTS, WEIGHT_TYPES, "path/to/weights.safetensors")
    data = _file_field(box, "Data (optional)", state.OWN_DATA, DATA_TYPES, DATA_HINT)
    left, right = box.columns(2)
    columns = (left.text_input("Text column", key=state.OWN_TEXT_COLUMN, placeholder="text", help=COLUMN_HELP),
               right.text_input("Label column", key=state.OWN_LABEL_COLUMN, placeholder="label", help=COLUMN_HELP))
    trust = box.checkbox("Trust this pickle (runs its code)", key=state.OWN_TRUST,
                         help="Needed for a whole pickled model (.pt) or weights saved as pickled objects.")
    if trust:
        box.warning(PICKLE_RISK, icon="⚠️")
    if box.button("Load", key=state.OWN_LOAD, type="primary"):
        _load(box, ref, weights, data, columns, trust)
    elif (job := load_job.current()) is not None:  # started in an earlier run of this session: follow it on
        _finish(box, job.args, job)


def _file_field(box: DeltaGenerator, label: str, field: str, types: list[str], placeholder: str) -> Field:
    """A path text input and, below it, an uploader for the same file: (typed path, upload or None)."""
    path_key, upload_key = state.file_keys(field)
    path = box.text_input(label, key=path_key, placeholder=placeholder)
    upload = box.file_uploader("…or upload it", type=types,
                               key=upload_key, max_upload_size=uploads.limit_mb(),
                               help=f"At most {uploads.UPLOAD_LIMIT_BYTES / 2**20:.0f} MB; saved in the "
                                    "workspace's uploads folder.")
    return path, upload


def _file(field: Field, what: str) -> str | None:
    """The file a field names: its typed path, or its upload saved under the workspace (not both)."""
    path, upload = _clean(field[0]), field[1]
    if path and upload is not None:
        raise PruneLabError(f"{what}: give a path or an upload, not both")
    return str(uploads.save(upload)) if upload is not None else (path or None)


def _data(field: Field, columns: tuple[str, str]) -> str | None:
    """The data reference the model loads with: the data file (typed or uploaded) and the column choices it
    carries (core.user_data.data_reference); an unknown option typed after a '?' is refused here, in the form."""
    ref = data_reference(_file(field, "data"), *(_clean(c) or None for c in columns))
    if ref is not None:
        split_reference(ref)
    return ref


def _clean(text: str) -> str:
    """Typed text without surrounding blanks or one pair of quotes (as pasted from a shell)."""
    text = text.strip()
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    return text[1:-1].strip() if quoted else text


def _load(box: DeltaGenerator, ref: str, weights: Field, data: Field, columns: tuple[str, str], trust: bool) -> None:
    """Check-load the model in a separate process (dashboard.load_job), unless this server already loaded it,
    then load and select it; on failure show why in the form and keep the current model."""
    load_job.abandon()  # Load again: the form's current values replace a load still running
    try:
        if not _clean(ref):
            raise PruneLabError("enter a model reference: path/to/file.py:build, a pickled model .pt or a "
                                "Hugging Face model folder")
        args = cache.UserModel(_clean(ref), _file(weights, "weights"), _data(data, columns), trust)
    except PruneLabError as e:
        box.error(md(e))
        return
    _finish(box, args, None if cache.is_loaded(args) else load_job.start(args))


def _finish(box: DeltaGenerator, args: cache.UserModel, job: load_job.LoadJob | None) -> None:
    """Wait for the check-load (if any) while showing Cancel; then load the model here and select it."""
    try:
        if job is not None and not (outcome := load_job.follow(box, job)).ok:
            raise PruneLabError(outcome.message)
        handle = cache.load_user_model(args)
    except PruneLabError as e:
        trust = args.trust_pickle
        hint = " In this form: tick “Trust this pickle”." if "--trust-pickle" in str(e) and not trust else ""
        box.error(f"{md(e)}{hint}")
        return
    except Exception as e:  # a bug in the user's code that core did not wrap: show it, keep the app
        box.error(f"loading failed: {type(e).__name__}: {md(e)}")
        return
    state.add_loaded_model(handle)  # selected on the rerun, before the selectbox is drawn
    st.rerun()

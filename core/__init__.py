"""PruneLab engine: pruning, measurement and export. Never imports streamlit."""

import os
import tempfile

__version__ = "0.1.0"

# Why: torch imports dill when it is installed (datasets, our hf extra, pulls it in), and dill asks tempfile for a
# writable directory at import, which tempfile finds by writing a file. On a full disk that write fails and every
# command would die at import — even `prunelab experiments list`, which must keep working there. Naming the
# directory tempfile would pick first ($TMPDIR, else /tmp) skips the probe; a later temporary file that cannot be
# written fails where it is written, with that command's own message.
if tempfile.tempdir is None:
    tempfile.tempdir = os.environ.get("TMPDIR") or "/tmp"

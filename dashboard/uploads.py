"""Files uploaded in the dashboard (a model's weights, its .npz data), saved under the workspace.

An upload's name comes from the browser, so it is never trusted: `safe_name` keeps only the last path
component's letters, digits, dots, dashes and underscores, drops leading dots and caps the length, and
`save` prefixes it with a hash of the content, so every upload lands directly inside `folder()` and two
different uploads never share a name (the same content uploaded twice is the same file).

Uploads are kept for a retention of PRUNELAB_UPLOAD_DAYS days (default 7; `inf` keeps them): `clean`, run once
when the dashboard server starts (dashboard/app.py), deletes the regular files directly inside `folder()` last
written (or uploaded again) longer ago than that. It never follows a symlink — neither a link inside the
folder nor a folder that is itself a link — and never enters a sub-folder: only what `save` writes goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import time
from pathlib import Path
from typing import Protocol

from core.errors import PruneLabError
from core.files import write_atomic
from core.workspace import workspace

UPLOAD_LIMIT_BYTES = 200 * 1024 * 1024  # also dashboard/.streamlit/config.toml's server.maxUploadSize (MB)
MAX_NAME = 80  # characters of the sanitised name, suffix included (the hash prefix comes on top)
PREFIX_CHARS = 16  # hex digits of the content's sha256 in front of the name
RETENTION_DAYS = 7.0  # default age (days since written or uploaded again) after which clean() deletes an upload
RETENTION_ENV = "PRUNELAB_UPLOAD_DAYS"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Upload(Protocol):
    """What `save` needs of Streamlit's UploadedFile."""

    name: str
    size: int

    def getvalue(self) -> bytes: ...


def folder() -> Path:
    """The workspace folder uploads are saved in."""
    return workspace() / "uploads"


def limit_mb() -> int:
    """The upload limit in Streamlit's megabytes (2**20 bytes), at least 1: file_uploader's max_upload_size."""
    return max(1, -(-UPLOAD_LIMIT_BYTES // 2**20))


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder: last path component (either separator), unsafe characters
    replaced by '_', no leading dots, lower-case suffix, at most MAX_NAME characters; 'upload' if nothing
    is left."""
    base = _UNSAFE.sub("_", re.split(r"[/\\]", name)[-1]).lstrip(".")
    stem, dot, suffix = base.rpartition(".")
    if not (dot and stem) or len(suffix) > 16:
        return base[:MAX_NAME] or "upload"
    suffix = suffix.lower()
    return f"{stem[:MAX_NAME - len(suffix) - 1]}.{suffix}"


def save(upload: Upload) -> Path:
    """Write an upload under folder() as '<content hash>-<safe name>' and return its path; an upload over
    UPLOAD_LIMIT_BYTES is refused (PruneLabError) before anything is written."""
    if upload.size > UPLOAD_LIMIT_BYTES:
        raise PruneLabError(f"{safe_name(upload.name)} is {upload.size / 2**20:.1f} MB; uploads are limited to "
                            f"{UPLOAD_LIMIT_BYTES / 2**20:.0f} MB — give a path to the file on this machine instead")
    data = upload.getvalue()
    root = folder().resolve()
    path = root / f"{hashlib.sha256(data).hexdigest()[:PREFIX_CHARS]}-{safe_name(upload.name)}"
    if path.parent != root:  # unreachable with safe_name; a guard against future edits
        raise PruneLabError(f"refusing to save the upload {upload.name!r} outside {root}")
    if not path.is_file() or path.stat().st_size != len(data):
        write_atomic(path, data)
    else:
        os.utime(path)  # uploaded again: its retention starts afresh
    return path


def retention_days() -> float:
    """Days an upload is kept: $PRUNELAB_UPLOAD_DAYS (a number >= 0, or inf), else RETENTION_DAYS."""
    text = os.environ.get(RETENTION_ENV) or str(RETENTION_DAYS)
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not days >= 0:  # also NaN
        raise PruneLabError(f"{RETENTION_ENV} must be a number of days >= 0 (or inf to keep uploads), got {text!r}")
    return days


def clean() -> list[Path]:
    """Delete the uploads older than retention_days() and return their paths (see the module docstring)."""
    cutoff = time.time() - retention_days() * 86_400  # seconds; -inf for inf: nothing is that old
    root = folder()
    if root.is_symlink() or not root.is_dir():
        return []
    removed = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                with contextlib.suppress(OSError):  # best effort: a file we may not delete stays
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed

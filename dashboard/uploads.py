"""Files uploaded in the dashboard (a model's weights, its .npz data), saved under the workspace.

An upload's name comes from the browser, so it is never trusted: `safe_name` keeps only the last path
component's letters, digits, dots, dashes and underscores, drops leading dots and caps the length, and
`save` prefixes it with a hash of the content, so every upload lands directly inside `folder()` and two
different uploads never share a name (the same content uploaded twice is the same file).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from core.errors import PruneLabError
from core.files import write_atomic
from core.runs import workspace

UPLOAD_LIMIT_BYTES = 200 * 1024 * 1024  # also dashboard/.streamlit/config.toml's server.maxUploadSize (MB)
MAX_NAME = 80  # characters of the sanitised name, suffix included (the hash prefix comes on top)
PREFIX_CHARS = 16  # hex digits of the content's sha256 in front of the name
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
    return path

"""File writing that never leaves a half-written file behind (write to a temp file, then rename), and
best-effort cache writes that never cost the result being cached."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_writable(path: Path) -> bool:
    """Whether a cache entry at path can be written (its folder, or the nearest one that exists, is writable);
    warns once if not, so a long computation says before it starts that it will not be cached."""
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is not None and folder.is_dir() and os.access(folder, os.W_OK):
        return True
    _warn_once(str(path.parent), "the folder is not writable")
    return False


def write_cache(path: Path, data: bytes) -> bool:
    """Write a cache entry atomically if the workspace allows. A cache is best-effort: a read-only or full
    workspace costs one warning per cache folder, never the result being cached (returns whether it was
    written)."""
    try:
        write_atomic(path, data)
        return True
    except OSError as e:
        _warn_once(str(path.parent), e.strerror or str(e))
        return False


def _warn_once(folder: str, reason: str) -> None:
    """One warning per cache folder and process (a sweep or a baseline that fails to cache several entries
    says so once), on stderr like the command line's other warnings."""
    said = _said(folder)
    if not said:
        said.append(reason)
        from tqdm import tqdm  # writes around any progress bar on the line, instead of into it

        tqdm.write(f"prunelab: warning: cannot write the cache in {folder} ({reason}): results are computed but "
                   "not kept for next time", file=sys.stderr)


@functools.lru_cache(maxsize=256)
def _said(folder: str) -> list[str]:
    """The reasons already reported for a cache folder (empty until the first)."""
    return []
